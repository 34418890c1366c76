// Package docs holds shoal's documentation: the pages the README links to
// (operations, failover, testing, security, recovery, migration, lvsctl,
// development). It has no code; its test checks that every relative link
// in the repository's Markdown files, and every #anchor in one, resolves,
// so that moving a section or renaming a heading cannot leave a dead link.
package docs
