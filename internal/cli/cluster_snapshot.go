package cli

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/client"
	"github.com/berth-dev/berth/internal/embedetcd"
)

// snapshotSHA256Header is apiserver.SnapshotSHA256Header; the CLI talks
// only HTTP to the server.
const snapshotSHA256Header = "X-Berth-Snapshot-Sha256"

func newClusterSnapshotCommand() *cobra.Command {
	cmd := groupCommand("snapshot", "Save a snapshot of the store",
		`Save an etcd snapshot of the store: every object of the cluster (resource
groups, container groups, networks, nodes, tokens). 'berth server
--restore-snapshot FILE' starts a new cluster from it. The data dir's CA key,
admin token and encryption key file are not in it; back them up separately.`)
	cmd.AddCommand(newClusterSnapshotSaveCommand())
	return cmd
}

func newClusterSnapshotSaveCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "save FILE",
		Short: "Save a snapshot of the store to FILE",
		Long: `Save a snapshot of the store to FILE. The file appears only once the whole
snapshot arrived and passed its checks (length, SHA-256, etcd's own checksum
and database check); an existing FILE is replaced. It holds every secret of
the store: keep it as safe as the data dir.`,
		Example: "  berth cluster snapshot save /backup/berth-$(date +%F).db",
		Args:    exactArgs(1, "FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := connectNodeAPI()
			if err != nil {
				return err
			}
			info, err := saveSnapshot(cmd, api, args[0])
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "Saved snapshot %s: %d bytes, revision %d, %d keys, sha256 %s\n",
				args[0], info.Size, info.Revision, info.Keys, info.SHA256)
			return err
		},
	}
}

// saveSnapshot downloads the snapshot into a temporary file next to file
// and renames it into place once it is known whole.
func saveSnapshot(cmd *cobra.Command, api *nodeAPI, file string) (_ embedetcd.SnapshotInfo, retErr error) {
	ctx := cmd.Context()
	u := api.base.JoinPath("cluster/snapshot")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return embedetcd.SnapshotInfo{}, err
	}
	req.Header.Set("Authorization", "Bearer "+api.token)
	// A large store takes longer than the node commands' timeout; the
	// command's context bounds it instead.
	hc := *api.http
	hc.Timeout = 0
	resp, err := hc.Do(req)
	if err != nil {
		return embedetcd.SnapshotInfo{}, fmt.Errorf("GET %s: %w", u.Path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return embedetcd.SnapshotInfo{}, snapshotAPIError(resp.StatusCode, b)
	}

	f, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".tmp*")
	if err != nil {
		return embedetcd.SnapshotInfo{}, fmt.Errorf("save snapshot: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if retErr != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return embedetcd.SnapshotInfo{}, fmt.Errorf("save snapshot: %w", err)
	}
	sum := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, sum), resp.Body)
	if err != nil {
		return embedetcd.SnapshotInfo{}, fmt.Errorf("save snapshot: download after %d bytes: %w", n, err)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return embedetcd.SnapshotInfo{}, fmt.Errorf("save snapshot: got %d of %d bytes", n, resp.ContentLength)
	}
	if want, got := resp.Header.Get(snapshotSHA256Header), fmt.Sprintf("%x", sum.Sum(nil)); want != "" && want != got {
		return embedetcd.SnapshotInfo{}, fmt.Errorf("save snapshot: the download's sha256 %s is not the server's %s", got, want)
	}
	if err := f.Sync(); err != nil {
		return embedetcd.SnapshotInfo{}, fmt.Errorf("save snapshot: %w", err)
	}
	if err := f.Close(); err != nil {
		return embedetcd.SnapshotInfo{}, fmt.Errorf("save snapshot: %w", err)
	}
	info, err := embedetcd.CheckSnapshot(tmp)
	if err != nil {
		return embedetcd.SnapshotInfo{}, fmt.Errorf("save snapshot: %w", err)
	}
	if err := os.Rename(tmp, file); err != nil {
		return embedetcd.SnapshotInfo{}, fmt.Errorf("save snapshot: %w", err)
	}
	return info, nil
}

// snapshotAPIError is the API's error answer as the other commands print
// it.
func snapshotAPIError(status int, b []byte) error {
	ae := &client.APIError{StatusCode: status}
	var env struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if json.Unmarshal(b, &env) == nil && env.Error.Code != "" {
		ae.Code, ae.Message = env.Error.Code, env.Error.Message
	} else {
		ae.Code = strings.ReplaceAll(http.StatusText(status), " ", "")
		ae.Message = strings.TrimSpace(string(b))
	}
	return ae
}
