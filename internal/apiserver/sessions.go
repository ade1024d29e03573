package apiserver

import (
	"crypto/rand"
	"crypto/subtle"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
)

// DefaultSessionTTL is how long an exec or attach password can be used
// after the POST that handed it out.
const DefaultSessionTTL = 60 * time.Second

// passwordLength is the length of a session password: ACI's are 32
// printable characters.
const passwordLength = 32

const passwordAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// Session kinds.
const (
	sessionExec   = "exec"
	sessionAttach = "attach"
)

// session is one exec or attach handed out by a POST: the websocket URI
// names it by ID, and the password unlocks it once. It is bound to one
// group incarnation, container and command, so the socket cannot be used
// for anything else.
type session struct {
	ID         string
	Kind       string
	Password   string
	GroupKey   string
	GroupUID   string
	Container  string
	Command    []string // exec only
	Rows, Cols uint16
	Expires    time.Time
	used       bool
}

// sessionError says why a connection was refused; its text goes into the
// websocket close frame.
type sessionError struct{ reason string }

func (e *sessionError) Error() string { return e.reason }

var (
	errSessionUnknown  = &sessionError{"unknown session: it never existed or has expired"}
	errSessionExpired  = &sessionError{"the session password has expired; request a new one"}
	errSessionUsed     = &sessionError{"the session password was already used; request a new one"}
	errSessionPassword = &sessionError{"wrong session password"}
	errSessionKind     = &sessionError{"the session is not of this kind"}
)

// sessions holds the sessions handed out by this server process, in
// memory: a session must be used on the server that made it (single node).
// Used sessions are kept until they expire so that a second use gets a
// clear refusal.
type sessions struct {
	mu   sync.Mutex
	ttl  time.Duration
	now  func() time.Time
	byID map[string]*session
}

func newSessions(ttl time.Duration, now func() time.Time) *sessions {
	if ttl <= 0 {
		ttl = DefaultSessionTTL
	}
	return &sessions{ttl: ttl, now: now, byID: map[string]*session{}}
}

// add completes s with an ID, a password and an expiry, stores it and
// returns it.
func (ss *sessions) add(s session) (session, error) {
	pw, err := randomPassword()
	if err != nil {
		return session{}, fmt.Errorf("session password: %w", err)
	}
	s.ID = uuid.NewString()
	s.Password = pw
	ss.mu.Lock()
	defer ss.mu.Unlock()
	now := ss.now()
	s.Expires = now.Add(ss.ttl)
	ss.sweep(now)
	ss.byID[s.ID] = &s
	return s, nil
}

// take uses up the session id of kind with password: one connection per
// session, whatever password it presents, so a password cannot be guessed
// on the same session twice.
func (ss *sessions) take(id, kind, password string) (session, error) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	now := ss.now()
	s, ok := ss.byID[id]
	switch {
	case !ok:
		ss.sweep(now)
		return session{}, errSessionUnknown
	case s.Kind != kind:
		return session{}, errSessionKind
	case s.used:
		return session{}, errSessionUsed
	case !now.Before(s.Expires):
		delete(ss.byID, id)
		return session{}, errSessionExpired
	}
	s.used = true
	if subtle.ConstantTimeCompare([]byte(password), []byte(s.Password)) != 1 {
		return session{}, errSessionPassword
	}
	return *s, nil
}

// sweep forgets sessions past their expiry; the caller holds mu.
func (ss *sessions) sweep(now time.Time) {
	for id, s := range ss.byID {
		if !now.Before(s.Expires) {
			delete(ss.byID, id)
		}
	}
}

func (ss *sessions) len() int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return len(ss.byID)
}

func randomPassword() (string, error) {
	b := make([]byte, passwordLength)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	for i := range b {
		// Bytes from 248 (4 × 62) up are drawn again so that every
		// character is uniform over the alphabet.
		for b[i] >= 248 {
			var one [1]byte
			if _, err := rand.Read(one[:]); err != nil {
				return "", err
			}
			b[i] = one[0]
		}
		b[i] = passwordAlphabet[int(b[i])%len(passwordAlphabet)]
	}
	return string(b), nil
}
