package dataplane

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/shoal-lb/shoal/dataplane/kernelfake"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

func bigConfig(services, servers int) *shoalv1.Config {
	c := &shoalv1.Config{Serial: 1}
	for i := 0; i < services; i++ {
		vs := &shoalv1.VirtualService{Name: fmt.Sprintf("svc%04d", i), Vip: addr(fmt.Sprintf("10.%d.%d.1", 100+i/250, i%250)), Port: 80}
		for j := 0; j < servers; j++ {
			vs.RealServers = append(vs.RealServers, rs(fmt.Sprintf("172.16.%d.%d", i%250, j+1)))
		}
		c.Services = append(c.Services, vs)
	}
	return c
}

// BenchmarkReconcile reports what an operator cares about: how long the first
// programming of N services takes, and how long an idle resync (compare only)
// takes, against the in-memory kernel (the real one adds a netlink round trip
// per change).
func BenchmarkReconcile(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("services=%d,servers=10", n), func(b *testing.B) {
			c := bigConfig(n, 10)
			var first, idle time.Duration
			for i := 0; i < b.N; i++ {
				d, err := New(Options{Mode: ModeIPVS, Logger: quietLogger(), IPVS: kernelfake.NewIPVS(),
					Addresses: kernelfake.NewAddresses(), Announcer: &kernelfake.Announcer{}, Links: kernelfake.NewLinks()})
				if err != nil {
					b.Fatal(err)
				}
				d.SetConfig(c)
				t0 := time.Now()
				if err := d.Reconcile(); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				if err := d.Reconcile(); err != nil {
					b.Fatal(err)
				}
				first += t1.Sub(t0)
				idle += time.Since(t1)
			}
			b.ReportMetric(float64(first.Milliseconds())/float64(b.N), "ms/first-reconcile")
			b.ReportMetric(float64(idle.Microseconds())/1000/float64(b.N), "ms/idle-resync")
		})
	}
}

// BenchmarkIdleResync is the periodic resync with nothing to change at
// 10,000 services × 10, against the in-memory kernel: the reconciler's own
// share of a resync (the real kernel adds its dumps). whole compares all
// of the table (Reconcile); one_part is what Run does each period.
func BenchmarkIdleResync(b *testing.B) {
	for _, how := range []struct {
		name string
		how  compare
	}{{"whole", compareWhole}, {"one_part", compareSweep}} {
		b.Run(how.name, func(b *testing.B) {
			k := kernelfake.NewIPVS()
			d, err := New(Options{Mode: ModeIPVS, Logger: quietLogger(), IPVS: k,
				Addresses: kernelfake.NewAddresses(), Announcer: &kernelfake.Announcer{}, Links: kernelfake.NewLinks()})
			if err != nil {
				b.Fatal(err)
			}
			d.SetConfig(scaleConfig(10000))
			if err := d.Reconcile(); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				var err error
				if how.how == compareSweep {
					err = d.sweep(nil)
				} else {
					err = d.reconcile(how.how)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/resync")
		})
	}
}

// BenchmarkWeightChange is one weight change applied as lvsd applies it
// (SetConfig, then the reconcile of the difference) at 10,000 services ×
// 10 real servers with a health checker, against the in-memory kernel.
func BenchmarkWeightChange(b *testing.B) { benchmarkWeightChange(b, false) }

// BenchmarkWeightChangeLeader is BenchmarkWeightChange on the leader,
// which holds the services' 10,000 VIPs.
func BenchmarkWeightChangeLeader(b *testing.B) { benchmarkWeightChange(b, true) }

func benchmarkWeightChange(b *testing.B, leader bool) {
	const n = 10000
	c := bigConfig(n, 10)
	d, err := New(Options{Mode: ModeIPVS, Logger: quietLogger(), IPVS: kernelfake.NewIPVS(), Health: &fakeHealth{},
		Addresses: kernelfake.NewAddresses(), Announcer: &kernelfake.Announcer{}, Links: kernelfake.NewLinks(),
		DefaultInterface: "eth0", AddressLifetime: -1})
	if err != nil {
		b.Fatal(err)
	}
	d.SetConfig(c)
	d.SetLeader(leader)
	if err := d.Reconcile(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := range b.N {
		c = withService(c, n/2, func(vs *shoalv1.VirtualService) { vs.RealServers[3].Weight = proto.Uint32(uint32(i%100 + 1)) })
		d.SetConfig(c)
		if err := d.reconcile(compareChange); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/change")
}
