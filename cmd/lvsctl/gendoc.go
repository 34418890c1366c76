package main

import (
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"github.com/shoal-lb/shoal/buildinfo"
)

func init() { registerCommand(newGenManCmd) }

// newGenManCmd is the hidden `lvsctl __gen-man DIR`, which writes
// lvsctl(1) and a page for every command (lvsctl-cluster-status(1), ...)
// with cobra's generator. The package build (deploy/deb) runs the binary it
// packs with it, as it runs `lvsctl completion bash|zsh|fish`.
func newGenManCmd(*app) *cobra.Command {
	return &cobra.Command{
		Use:    "__gen-man DIR",
		Short:  "Write lvsctl's manual pages to DIR",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			root := cmd.Root()
			// No "Auto generated ... on <date>" line: the date is the
			// build's, so that a rebuild writes the same pages.
			root.DisableAutoGenTag = true
			b := buildinfo.Get()
			h := &doc.GenManHeader{Section: "1", Source: "shoal " + b.Version, Manual: "shoal manual"}
			if t, err := time.Parse(time.RFC3339, b.Date); err == nil {
				h.Date = &t
			}
			return doc.GenManTree(root, h, args[0])
		},
	}
}
