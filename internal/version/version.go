// Package version holds the build's version, set with -ldflags -X.
package version

// Version and Commit are overwritten at build time.
var (
	Version = "dev"
	Commit  = "unknown"
)
