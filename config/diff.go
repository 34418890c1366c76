package config

import shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"

// Diff lists what changed from old to new.
func Diff(old, new *shoalv1.Config) []*shoalv1.Change {
	return nil // TODO
}
