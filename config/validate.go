package config

import shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"

// Validate returns nil or an Errors listing every problem of c.
func Validate(c *shoalv1.Config) error {
	return nil // TODO
}
