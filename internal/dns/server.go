// Package dns is Berth's built-in DNS server: authoritative for the zone
// of the container groups' FQDNs (<label>.<region>.<zone>), answering A
// records from the store, and a forwarder for every other name.
package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	mdns "github.com/miekg/dns"
)

// DefaultTTL is the TTL of the A records and of negative answers: short,
// so that a created or deleted group is seen by resolvers within seconds.
const DefaultTTL = 5

// forwardTimeout bounds one exchange with an upstream resolver.
const forwardTimeout = 2 * time.Second

// Records answers for the names in the zone.
type Records interface {
	// Lookup returns the address of a canonical name (lower case, with
	// the trailing dot) and whether the name exists at all: a name that
	// only has names below it exists without an address.
	Lookup(name string) (addr netip.Addr, exists bool)
}

// Options configure a Server.
type Options struct {
	// Listen is the HOST:PORT served over UDP and TCP; port 0 picks one.
	Listen string
	// Zone is the zone the server is authoritative for, e.g. berth.internal.
	Zone string
	// Forward are the upstream resolvers (HOST:PORT) for names outside the
	// zone, tried in order; without any, such queries are refused.
	Forward []string
	Records Records
	// TTL of the answers; default DefaultTTL.
	TTL    uint32
	Logger *slog.Logger
}

// Server serves one zone over UDP and TCP on the same address.
type Server struct {
	zone    string
	ns      string // the zone's name server, ns1.<zone>
	nsAddr  netip.Addr
	forward []string
	records Records
	ttl     uint32
	serial  uint32
	log     *slog.Logger
	udp     *mdns.Server
	tcp     *mdns.Server
	addr    string
}

// Listen binds the UDP and TCP sockets; Serve answers on them. Binding
// first lets the caller fail early and learn the address of port 0.
func Listen(opts Options) (*Server, error) {
	if opts.Records == nil {
		return nil, errors.New("dns: no records")
	}
	zone := mdns.CanonicalName(opts.Zone)
	if _, ok := mdns.IsDomainName(zone); !ok || zone == "." {
		return nil, fmt.Errorf("dns: zone %q is not a domain name", opts.Zone)
	}
	s := &Server{
		zone:    zone,
		ns:      "ns1." + zone,
		forward: opts.Forward,
		records: opts.Records,
		ttl:     opts.TTL,
		serial:  uint32(time.Now().Unix()),
		log:     opts.Logger,
	}
	if s.ttl == 0 {
		s.ttl = DefaultTTL
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	pc, ln, err := listenBoth(opts.Listen)
	if err != nil {
		return nil, err
	}
	s.addr = pc.LocalAddr().String()
	if ap, err := netip.ParseAddrPort(s.addr); err == nil && !ap.Addr().IsUnspecified() {
		s.nsAddr = ap.Addr().Unmap()
	}
	s.udp = &mdns.Server{PacketConn: pc, Handler: s}
	s.tcp = &mdns.Server{Listener: ln, Handler: s}
	return s, nil
}

// listenBoth binds UDP and TCP on one port. For port 0 the TCP port the
// kernel gave UDP may be taken; a few tries find a pair.
func listenBoth(addr string) (net.PacketConn, net.Listener, error) {
	var last error
	for range 10 {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("dns: listen udp %s: %w", addr, err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		last = fmt.Errorf("dns: listen tcp %s: %w", pc.LocalAddr(), err)
		if _, port, _ := net.SplitHostPort(addr); port != "0" {
			break
		}
	}
	return nil, nil, last
}

// Addr is the HOST:PORT the server answers on (UDP and TCP).
func (s *Server) Addr() string { return s.addr }

// Serve answers queries until ctx ends, then shuts both servers down.
func (s *Server) Serve(ctx context.Context) error {
	servers := []*mdns.Server{s.udp, s.tcp}
	errs := make(chan error, len(servers))
	started := make([]chan struct{}, len(servers))
	exited := make([]chan struct{}, len(servers))
	for i, srv := range servers {
		started[i], exited[i] = make(chan struct{}), make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started[i]) }
		go func() {
			defer close(exited[i])
			if err := srv.ActivateAndServe(); err != nil {
				errs <- fmt.Errorf("dns: serve %s: %w", s.addr, err)
			}
		}()
	}
	s.log.Info("dns server listening", "addr", s.addr, "zone", s.zone, "forward", s.forward)
	var err error
	select {
	case <-ctx.Done():
	case err = <-errs:
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	for i, srv := range servers {
		// Shutdown refuses a server that has not started yet.
		select {
		case <-started[i]:
			_ = srv.ShutdownContext(sctx)
		case <-exited[i]:
		}
		<-exited[i]
	}
	return err
}

// Close releases the sockets of a server that never served.
func (s *Server) Close() error {
	return errors.Join(s.udp.PacketConn.Close(), s.tcp.Listener.Close())
}

// ServeDNS answers one query: from the records inside the zone, from an
// upstream resolver outside it.
func (s *Server) ServeDNS(w mdns.ResponseWriter, r *mdns.Msg) {
	m := new(mdns.Msg)
	if r.Opcode != mdns.OpcodeQuery || len(r.Question) != 1 {
		m.SetRcode(r, mdns.RcodeNotImplemented)
		if len(r.Question) != 1 {
			m.SetRcode(r, mdns.RcodeFormatError)
		}
		s.write(w, m)
		return
	}
	q := r.Question[0]
	name := mdns.CanonicalName(q.Name)
	if !mdns.IsSubDomain(s.zone, name) {
		s.write(w, s.forwarded(w, r))
		return
	}
	m.SetReply(r)
	m.Authoritative = true
	if opt := r.IsEdns0(); opt != nil {
		m.SetEdns0(mdns.DefaultMsgSize, false)
	}
	s.answer(m, q, name)
	s.write(w, m)
}

// answer fills in the authoritative answer for a name in the zone.
func (s *Server) answer(m *mdns.Msg, q mdns.Question, name string) {
	wants := func(t uint16) bool { return q.Qtype == t || q.Qtype == mdns.TypeANY }
	switch {
	case name == s.zone:
		if wants(mdns.TypeSOA) {
			m.Answer = append(m.Answer, s.soa())
		}
		if wants(mdns.TypeNS) {
			m.Answer = append(m.Answer, &mdns.NS{Hdr: s.hdr(s.zone, mdns.TypeNS), Ns: s.ns})
		}
	case name == s.ns:
		if wants(mdns.TypeA) && s.nsAddr.Is4() {
			m.Answer = append(m.Answer, &mdns.A{Hdr: s.hdr(name, mdns.TypeA), A: s.nsAddr.AsSlice()})
		}
	default:
		addr, exists := s.records.Lookup(name)
		if !exists {
			m.Rcode = mdns.RcodeNameError
			break
		}
		if wants(mdns.TypeA) && addr.Is4() {
			m.Answer = append(m.Answer, &mdns.A{Hdr: s.hdr(name, mdns.TypeA), A: addr.AsSlice()})
		}
	}
	if len(m.Answer) == 0 {
		// NXDOMAIN or no data: the SOA tells resolvers how long to cache
		// that (its minimum, the short TTL).
		m.Ns = append(m.Ns, s.soa())
	}
}

func (s *Server) hdr(name string, t uint16) mdns.RR_Header {
	return mdns.RR_Header{Name: name, Rrtype: t, Class: mdns.ClassINET, Ttl: s.ttl}
}

func (s *Server) soa() *mdns.SOA {
	return &mdns.SOA{
		Hdr:     s.hdr(s.zone, mdns.TypeSOA),
		Ns:      s.ns,
		Mbox:    "hostmaster." + s.zone,
		Serial:  s.serial,
		Refresh: 3600,
		Retry:   600,
		Expire:  86400,
		Minttl:  s.ttl,
	}
}

// forwarded asks the upstream resolvers, in order, over the protocol the
// query came in on (a truncated UDP answer makes the client retry on TCP).
func (s *Server) forwarded(w mdns.ResponseWriter, r *mdns.Msg) *mdns.Msg {
	m := new(mdns.Msg)
	if len(s.forward) == 0 {
		return m.SetRcode(r, mdns.RcodeRefused)
	}
	network := "udp"
	if _, ok := w.RemoteAddr().(*net.TCPAddr); ok {
		network = "tcp"
	}
	c := &mdns.Client{Net: network, Timeout: forwardTimeout}
	var last error
	for _, up := range s.forward {
		resp, _, err := c.Exchange(r, up)
		if err == nil {
			resp.Id = r.Id
			return resp
		}
		last = err
	}
	s.log.Debug("dns forward failed", "name", r.Question[0].Name, "upstreams", s.forward, "err", last)
	return m.SetRcode(r, mdns.RcodeServerFailure)
}

func (s *Server) write(w mdns.ResponseWriter, m *mdns.Msg) {
	if err := w.WriteMsg(m); err != nil {
		s.log.Debug("dns write failed", "remote", w.RemoteAddr().String(), "err", err)
	}
}

// NormalizeUpstream turns HOST or HOST:PORT into HOST:PORT, port 53 by
// default.
func NormalizeUpstream(s string) (string, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.String(), nil
	}
	a, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil {
		return "", fmt.Errorf("dns: upstream %q: want IP or IP:PORT", s)
	}
	return netip.AddrPortFrom(a.Unmap(), 53).String(), nil
}
