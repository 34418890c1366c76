package main

import (
	"fmt"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// BenchmarkParseConfigAtScale is lvsctl's reading of a `config apply -f`
// file of issue 22's size, 10,000 services × 10 real servers, in JSON
// as `config get -o json` writes it (7 MB), and in YAML.
func BenchmarkParseConfigAtScale(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"config":{"services":[`)
	for i := range 10000 {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"name":"svc-%05d","vip":{"address":"10.%d.%d.10","prefixLength":24},"port":80,"protocol":"tcp","scheduler":"wlc","realServers":[`, i, i/250, i%250)
		for j := range 10 {
			k := i*10 + j
			if j > 0 {
				sb.WriteByte(',')
			}
			fmt.Fprintf(&sb, `{"address":"172.%d.%d.%d","weight":100,"forward":"dr"}`, 16+k/62500, k/250%250, k%250+1)
		}
		sb.WriteString(`]}`)
	}
	sb.WriteString(`]}}`)
	js := []byte(sb.String())
	ys, err := yaml.JSONToYAML(js)
	if err != nil {
		b.Fatal(err)
	}
	for _, f := range []struct {
		name string
		file []byte
	}{{"json", js}, {"yaml", ys}} {
		b.Run(f.name, func(b *testing.B) {
			for b.Loop() {
				c, err := parseConfig(f.file)
				if err != nil || len(c.GetServices()) != 10000 {
					b.Fatal(len(c.GetServices()), err)
				}
			}
		})
	}
}
