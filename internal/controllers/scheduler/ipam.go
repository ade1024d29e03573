package scheduler

import "net/netip"

// nextFree returns the first address of prefix after from (wrapping
// around) that is neither taken nor reserved: the network address, the
// gateway (the first address, which every node's bridge holds) and the
// broadcast address. Starting after the last address handed out spreads
// reuse, so an address freed a moment ago is not given out again at once.
func nextFree(prefix netip.Prefix, from netip.Addr, taken func(netip.Addr) bool) (netip.Addr, bool) {
	prefix = prefix.Masked()
	first := prefix.Addr().Next().Next() // after network and gateway
	last := lastAddr(prefix).Prev()      // before broadcast
	if !first.IsValid() || !last.IsValid() || last.Less(first) {
		return netip.Addr{}, false
	}
	start := first
	if from.IsValid() && prefix.Contains(from) && from.Less(last) && !from.Less(first) {
		start = from.Next()
	}
	a := start
	for {
		if !taken(a) {
			return a, true
		}
		if a == last {
			a = first
		} else {
			a = a.Next()
		}
		if a == start {
			return netip.Addr{}, false
		}
	}
}

// lastAddr is the highest address of an IPv4 prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	host := 32 - p.Bits()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= (1<<host - 1)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
