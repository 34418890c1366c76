package migrate

import (
	"slices"
	"strings"
	"testing"
)

// TestImportRefusesUnusableAddresses: every importer refuses the addresses
// the API refuses (config.Admit), each error naming the line that set it.
func TestImportRefusesUnusableAddresses(t *testing.T) {
	tests := []struct {
		name   string
		format Format
		in     string
		want   []string
	}{
		{"lvs.cf", FormatLVSCF, `network = nat
nat_router = 127.0.0.1 eth1:1
virtual web {
	address = 0.0.0.0 eth0:1
	port = 80
	sorry_server = 224.0.0.9:80
	server a {
		address = 224.0.0.5
	}
	server b {
		address = 127.0.0.1
	}
}
virtual six {
	address = fe80::1
	port = 80
	server c {
		address = fe80::2
	}
}
`, []string{
			"f:2: global.nat_router.address: 127.0.0.1 is a loopback address, which no other host can reach; a NAT router address must be an address clients can reach",
			"f:4: services[web].vip.address: 0.0.0.0 is the unspecified address; a VIP must be a unicast address clients can reach",
			"f:6: services[web].sorry_server.address: 224.0.0.9 is a multicast address; IPVS forwards each connection to one server",
			"f:8: services[web].real_servers[224.0.0.5:80].address: 224.0.0.5 is a multicast address; IPVS forwards each connection to one server",
			"f:15: services[six].vip.interface: required for the link-local address fe80::1, which means something only on its own link",
		}},
		{"keepalived", FormatKeepalived, `virtual_server 255.255.255.255 80 {
    lb_kind NAT
    sorry_server 0.0.0.0 80
    real_server 224.0.0.5 80 {
    }
    real_server 127.0.0.1 8080 {
    }
}
virtual_server ::1 443 {
    real_server 2001:db8::1 443 {
    }
}
`, []string{
			"f:1: services[tcp-255.255.255.255-80].vip.address: 255.255.255.255 is the broadcast address; a VIP must be a unicast address clients can reach",
			"f:3: services[tcp-255.255.255.255-80].sorry_server.address: 0.0.0.0 is the unspecified address; IPVS forwards each connection to one server",
			"f:4: services[tcp-255.255.255.255-80].real_servers[224.0.0.5:80].address: 224.0.0.5 is a multicast address; IPVS forwards each connection to one server",
			"f:9: services[tcp---1-443].vip.address: ::1 is a loopback address, which no other host can reach; a VIP must be an address clients can reach",
		}},
		{"ipvsadm", FormatIPVSADM, `-A -t 224.0.0.1:80 -s rr
-a -t 224.0.0.1:80 -r 10.0.0.1:80 -m
-A -t 192.0.2.10:80 -s rr
-a -t 192.0.2.10:80 -r 0.0.0.0:80 -m
-a -t 192.0.2.10:80 -r 127.0.0.1:80 -m
`, []string{
			"f:1: services[tcp-224.0.0.1-80].vip.address: 224.0.0.1 is a multicast address; a VIP must be a unicast address clients can reach",
			"f:4: services[tcp-192.0.2.10-80].real_servers[0.0.0.0:80].address: 0.0.0.0 is the unspecified address; IPVS forwards each connection to one server",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Import([]byte(tt.in), Options{Format: tt.format, Filename: "f"})
			if err == nil {
				t.Fatal("imported")
			}
			got := strings.Split(err.Error(), "\n")
			if !slices.Equal(got, tt.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", err, strings.Join(tt.want, "\n"))
			}
		})
	}
}
