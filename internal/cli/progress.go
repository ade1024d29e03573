package cli

import (
	"fmt"
	"io"

	"github.com/berth-dev/berth/client"
)

// progress prints what changed in a group while create waits: container
// states and new events, one line each. It only runs when stderr is a
// terminal, so scripts see nothing.
type progress struct {
	w      io.Writer
	seen   map[string]bool
	states map[string]string
}

func newProgress(w io.Writer) *progress {
	return &progress{w: w, seen: map[string]bool{}, states: map[string]string{}}
}

func (p *progress) update(g *client.ContainerGroup) {
	if g.Properties == nil {
		return
	}
	for _, c := range g.Properties.Containers {
		if c.Properties == nil || c.Properties.InstanceView == nil {
			continue
		}
		iv := c.Properties.InstanceView
		for _, e := range iv.Events {
			key := fmt.Sprintf("%s\x00%s\x00%s\x00%d", c.Name, e.Name, e.Message, e.Count)
			if !p.seen[key] {
				p.seen[key] = true
				fmt.Fprintf(p.w, "%s: %s: %s\n", c.Name, e.Name, e.Message)
			}
		}
		if st := iv.CurrentState; st != nil && st.State != "" && p.states[c.Name] != st.State {
			p.states[c.Name] = st.State
			fmt.Fprintf(p.w, "%s: container is %s\n", c.Name, st.State)
		}
	}
}
