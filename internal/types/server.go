package types

import "time"

// Server is one `berth server` of the cluster as it announced itself at
// its last start. Which server leads is the election's to say, not this.
type Server struct {
	Name string `json:"name"`
	// APIURL is the server's ARM endpoint (https://HOST:PORT).
	APIURL string `json:"apiURL"`
	// PeerURL is where its etcd member is reached, when it has one that
	// other members reach.
	PeerURL   string    `json:"peerURL,omitempty"`
	Version   string    `json:"version,omitempty"`
	StartedAt time.Time `json:"startedAt"`
}
