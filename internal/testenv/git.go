package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// GitBinary is the git executable gitRepo volumes and their tests use.
const GitBinary = "git"

// GitRepo is a bare repository served read-only by `git daemon` on
// loopback.
type GitRepo struct {
	// URL is git://127.0.0.1:PORT/NAME.git.
	URL string
	// Commits are the ids of the commits made, oldest first.
	Commits []string
}

// GitCommit is one commit of ServeGitRepo: the files it writes (path
// relative to the work tree → content) on top of the previous commit.
type GitCommit struct {
	Message string
	Files   map[string]string
}

// ServeGitRepo makes a bare repository name.git with commits (on branch
// main) and serves it with `git daemon` on a free 127.0.0.1 port until t
// ends.
func ServeGitRepo(t testing.TB, name string, commits []GitCommit) *GitRepo {
	t.Helper()
	RequireBinary(t, GitBinary)
	base := t.TempDir()
	work := filepath.Join(t.TempDir(), "work")
	git := func(dir string, args ...string) string {
		t.Helper()
		cmd := exec.Command(GitBinary, args...)
		cmd.Dir = dir
		// The test must not depend on the machine's git configuration.
		cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
			"GIT_AUTHOR_NAME=berth", "GIT_AUTHOR_EMAIL=berth@example.invalid",
			"GIT_COMMITTER_NAME=berth", "GIT_COMMITTER_EMAIL=berth@example.invalid")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		t.Fatal(err)
	}
	git(work, "init", "-q", "-b", "main")
	repo := &GitRepo{}
	for _, c := range commits {
		for p, content := range c.Files {
			full := filepath.Join(work, p)
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		git(work, "add", "-A")
		git(work, "commit", "-q", "-m", c.Message)
		repo.Commits = append(repo.Commits, git(work, "rev-parse", "HEAD"))
	}
	git(base, "clone", "-q", "--bare", work, name+".git")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	logPath := filepath.Join(t.TempDir(), "git-daemon.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command(GitBinary, "daemon", "--reuseaddr", "--export-all", "--listen=127.0.0.1",
		fmt.Sprintf("--port=%d", port), "--base-path="+base, base)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = daemonAttrs()
	if err := startDaemon(cmd); err != nil {
		t.Fatalf("start git daemon: %v", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	dumpLogOnFailure(t, "git daemon", logPath)
	t.Cleanup(func() { stopProcess(cmd, done, 5*time.Second) })

	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-done:
			t.Fatalf("git daemon on %s exited during start-up:\n%s", addr, logTail(logPath))
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("git daemon on %s not listening after 10s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	repo.URL = "git://" + addr + "/" + name + ".git"
	return repo
}
