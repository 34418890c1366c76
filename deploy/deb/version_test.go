package main

import "testing"

func TestDebVersion(t *testing.T) {
	const date = "2026-12-07T03:00:00Z"
	tests := []struct{ in, want string }{
		{"v1.4.0", "1.4.0"},
		{"1.4", "1.4"},
		{"v1.4.0-rc.1", "1.4.0~rc.1"},
		{"v1.4.0-rc-1", "1.4.0~rc.1"},
		{"v1.4.0-3-gabc1234", "1.4.0+git3.gabc1234"},
		{"v1.4.0-rc.1-3-gabc1234", "1.4.0~rc.1+git3.gabc1234"},
		{"v1.4.0-dirty", "1.4.0+dirty"},
		{"v1.4.0-3-gabc1234-dirty", "1.4.0+git3.gabc1234.dirty"},
		{"abc1234", "0.0.0~git20261207030000.gabc1234"},
		{"0123abc", "0.0.0~git20261207030000.g0123abc"},
		{"abc1234-dirty", "0.0.0~git20261207030000.gabc1234.dirty"},
		{"devel", "0.0.0~git20261207030000.devel"},
	}
	for _, tt := range tests {
		got, err := debVersion(tt.in, date)
		if err != nil || got != tt.want {
			t.Errorf("debVersion(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"v1.4.0_beta", "release/1"} {
		if got, err := debVersion(bad, date); err == nil {
			t.Errorf("debVersion(%q) = %q, want an error", bad, got)
		}
	}
	if got, err := debVersion("abc1234", "yesterday"); err == nil {
		t.Errorf("a version without a tag and a bad date: %q", got)
	}
}
