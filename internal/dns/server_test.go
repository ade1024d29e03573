package dns

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

const zone = "berth.test"

// startServer serves t's records on a loopback port until the test ends.
func startServer(t *testing.T, records Records, forward ...string) *Server {
	t.Helper()
	s, err := Listen(Options{Listen: "127.0.0.1:0", Zone: zone, Forward: forward, Records: records})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	ctx, cancel := contextWithCancel(t)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("server did not stop within 10s")
		}
	})
	return s
}

func query(t *testing.T, network, addr, name string, qtype uint16) *mdns.Msg {
	t.Helper()
	m := new(mdns.Msg)
	m.SetQuestion(mdns.Fqdn(name), qtype)
	c := &mdns.Client{Net: network, Timeout: 5 * time.Second}
	resp, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s query %s %s: %v", network, name, mdns.TypeToString[qtype], err)
	}
	return resp
}

func aRecords(m *mdns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		if a, ok := rr.(*mdns.A); ok {
			out = append(out, a.A.String())
		}
	}
	return out
}

func TestServer_Zone(t *testing.T) {
	tab := &Table{}
	tab.Set(zone, map[string]netip.Addr{
		"web1.westus." + zone:                  netip.MustParseAddr("10.1.0.5"),
		"Web2.abcdefgh23456789.westus." + zone: netip.MustParseAddr("10.1.0.6"),
	})
	s := startServer(t, tab)
	tests := []struct {
		name      string
		qname     string
		qtype     uint16
		wantRcode int
		wantA     []string
		wantSOA   bool // in the authority section
	}{
		{"a label resolves to its group's IP", "web1.westus." + zone, mdns.TypeA, mdns.RcodeSuccess, []string{"10.1.0.5"}, false},
		{"names are case-insensitive", "WEB1.WestUS.Berth.Test", mdns.TypeA, mdns.RcodeSuccess, []string{"10.1.0.5"}, false},
		{"a hashed name resolves", "web2.abcdefgh23456789.westus." + zone, mdns.TypeA, mdns.RcodeSuccess, []string{"10.1.0.6"}, false},
		{"an unknown label is NXDOMAIN with the SOA", "nope1.westus." + zone, mdns.TypeA, mdns.RcodeNameError, nil, true},
		{"AAAA of a label is no data", "web1.westus." + zone, mdns.TypeAAAA, mdns.RcodeSuccess, nil, true},
		{"a region with labels below it exists without data", "westus." + zone, mdns.TypeA, mdns.RcodeSuccess, nil, true},
		{"an unknown region is NXDOMAIN", "eastus." + zone, mdns.TypeA, mdns.RcodeNameError, nil, true},
	}
	for _, network := range []string{"udp", "tcp"} {
		for _, tt := range tests {
			t.Run(network+"/"+tt.name, func(t *testing.T) {
				resp := query(t, network, s.Addr(), tt.qname, tt.qtype)
				if resp.Rcode != tt.wantRcode {
					t.Errorf("rcode = %s, want %s", mdns.RcodeToString[resp.Rcode], mdns.RcodeToString[tt.wantRcode])
				}
				if !resp.Authoritative {
					t.Error("answer is not authoritative")
				}
				if got := aRecords(resp); !slices.Equal(got, tt.wantA) {
					t.Errorf("A records = %v, want %v", got, tt.wantA)
				}
				gotSOA := len(resp.Ns) == 1 && resp.Ns[0].Header().Rrtype == mdns.TypeSOA
				if gotSOA != tt.wantSOA {
					t.Errorf("authority = %v, want SOA: %v", resp.Ns, tt.wantSOA)
				}
				for _, rr := range resp.Answer {
					if rr.Header().Ttl != DefaultTTL {
						t.Errorf("TTL of %v = %d, want %d", rr, rr.Header().Ttl, DefaultTTL)
					}
				}
			})
		}
	}
	t.Run("the apex has SOA and NS", func(t *testing.T) {
		soa := query(t, "udp", s.Addr(), zone, mdns.TypeSOA)
		if len(soa.Answer) != 1 || soa.Answer[0].(*mdns.SOA).Minttl != DefaultTTL {
			t.Errorf("SOA answer = %v", soa.Answer)
		}
		ns := query(t, "udp", s.Addr(), zone, mdns.TypeNS)
		if len(ns.Answer) != 1 || ns.Answer[0].(*mdns.NS).Ns != "ns1."+zone+"." {
			t.Errorf("NS answer = %v", ns.Answer)
		}
		nsA := query(t, "udp", s.Addr(), "ns1."+zone, mdns.TypeA)
		if got := aRecords(nsA); !slices.Equal(got, []string{"127.0.0.1"}) {
			t.Errorf("A of the name server = %v, want the listen address", got)
		}
	})
	t.Run("a change of the table shows at once", func(t *testing.T) {
		tab.Set(zone, map[string]netip.Addr{"web3.westus." + zone: netip.MustParseAddr("10.1.0.7")})
		if got := aRecords(query(t, "udp", s.Addr(), "web3.westus."+zone, mdns.TypeA)); !slices.Equal(got, []string{"10.1.0.7"}) {
			t.Errorf("new record = %v", got)
		}
		if resp := query(t, "udp", s.Addr(), "web1.westus."+zone, mdns.TypeA); resp.Rcode != mdns.RcodeNameError {
			t.Errorf("removed record answers %s, want NXDOMAIN", mdns.RcodeToString[resp.Rcode])
		}
	})
}

// upstream is a miekg/dns server on loopback that answers every A query
// with 192.0.2.1 and counts the queries per network.
func startUpstream(t *testing.T) (addr string, seen chan string) {
	t.Helper()
	seen = make(chan string, 16)
	h := mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(r)
		m.RecursionAvailable = true
		m.Answer = append(m.Answer, &mdns.A{
			Hdr: mdns.RR_Header{Name: r.Question[0].Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 60},
			A:   netip.MustParseAddr("192.0.2.1").AsSlice(),
		})
		seen <- w.RemoteAddr().Network() + " " + r.Question[0].Name
		_ = w.WriteMsg(m)
	})
	up, err := Listen(Options{Listen: "127.0.0.1:0", Zone: "unused.test", Records: &Table{}})
	if err != nil {
		t.Fatal(err)
	}
	up.udp.Handler, up.tcp.Handler = h, h
	ctx, cancel := contextWithCancel(t)
	done := make(chan struct{})
	go func() { _ = up.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return up.Addr(), seen
}

func TestServer_Forward(t *testing.T) {
	upAddr, seen := startUpstream(t)
	dead := deadAddr(t)
	s := startServer(t, &Table{}, dead, upAddr) // the dead one is tried first
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			resp := query(t, network, s.Addr(), "example.org", mdns.TypeA)
			if resp.Rcode != mdns.RcodeSuccess || !slices.Equal(aRecords(resp), []string{"192.0.2.1"}) {
				t.Fatalf("forwarded answer = %v", resp)
			}
			if resp.Authoritative {
				t.Error("a forwarded answer claims authority")
			}
			select {
			case got := <-seen:
				if got != network+" example.org." {
					t.Errorf("upstream saw %q, want %q", got, network+" example.org.")
				}
			case <-time.After(5 * time.Second):
				t.Fatal("upstream saw no query")
			}
		})
	}
	t.Run("names in the zone are not forwarded", func(t *testing.T) {
		resp := query(t, "udp", s.Addr(), "nope1.westus."+zone, mdns.TypeA)
		if resp.Rcode != mdns.RcodeNameError {
			t.Errorf("rcode = %s, want NXDOMAIN", mdns.RcodeToString[resp.Rcode])
		}
		select {
		case got := <-seen:
			t.Errorf("upstream saw %q", got)
		default:
		}
	})
}

func TestServer_ForwardFailures(t *testing.T) {
	t.Run("without upstreams other names are refused", func(t *testing.T) {
		s := startServer(t, &Table{})
		if resp := query(t, "udp", s.Addr(), "example.org", mdns.TypeA); resp.Rcode != mdns.RcodeRefused {
			t.Errorf("rcode = %s, want REFUSED", mdns.RcodeToString[resp.Rcode])
		}
	})
	t.Run("an upstream that does not answer is a server failure", func(t *testing.T) {
		s := startServer(t, &Table{}, deadAddr(t))
		if resp := query(t, "tcp", s.Addr(), "example.org", mdns.TypeA); resp.Rcode != mdns.RcodeServerFailure {
			t.Errorf("rcode = %s, want SERVFAIL", mdns.RcodeToString[resp.Rcode])
		}
	})
}

func TestListen_BadZone(t *testing.T) {
	for _, z := range []string{"", ".", "bad..zone"} {
		if s, err := Listen(Options{Listen: "127.0.0.1:0", Zone: z, Records: &Table{}}); err == nil {
			s.Close()
			t.Errorf("zone %q accepted", z)
		}
	}
}

func TestNormalizeUpstream(t *testing.T) {
	tests := []struct{ in, want string }{
		{"192.0.2.1", "192.0.2.1:53"},
		{"192.0.2.1:5353", "192.0.2.1:5353"},
		{"2001:db8::1", "[2001:db8::1]:53"},
		{"[2001:db8::1]:54", "[2001:db8::1]:54"},
	}
	for _, tt := range tests {
		if got, err := NormalizeUpstream(tt.in); err != nil || got != tt.want {
			t.Errorf("NormalizeUpstream(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	if _, err := NormalizeUpstream("dns.example"); err == nil {
		t.Error("a host name was accepted")
	}
}

func TestUpstreamsIn(t *testing.T) {
	path := filepath.Join(t.TempDir(), "resolv.conf")
	conf := "# comment\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch example\nnameserver ::1\nnameserver 2001:db8::53\noptions edns0\n"
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.2:53", "[2001:db8::53]:53"}
	if got := upstreamsIn(path); !slices.Equal(got, want) {
		t.Errorf("upstreams = %v, want %v (loopback left out)", got, want)
	}
}

// deadAddr is a loopback UDP and TCP address nothing answers on.
func deadAddr(t *testing.T) string {
	t.Helper()
	s, err := Listen(Options{Listen: "127.0.0.1:0", Zone: "dead.test", Records: &Table{}})
	if err != nil {
		t.Fatal(err)
	}
	addr := s.Addr()
	s.Close()
	return addr
}
