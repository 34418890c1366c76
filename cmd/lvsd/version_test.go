package main

import "testing"

// TestVersionFlag: --version needs no other flag, not even an --id.
func TestVersionFlag(t *testing.T) {
	f, err := parseFlags([]string{"--version", "--id", ""})
	if err != nil || !f.version {
		t.Fatalf("parseFlags(--version): %+v %v", f, err)
	}
	if _, err := parseFlags([]string{"--id", ""}); err == nil {
		t.Error("an empty --id accepted without --version")
	}
}
