package config

import "strings"

// FieldError is one problem of a configuration. Field is a path such as
// `services[web].real_servers[10.0.0.1:80].weight`.
type FieldError struct {
	Field  string
	Reason string
}

func (e FieldError) Error() string { return e.Field + ": " + e.Reason }

// Errors lists every problem Validate found, in a stable order.
type Errors []FieldError

func (es Errors) Error() string {
	switch len(es) {
	case 0:
		return "no errors"
	case 1:
		return "invalid config: " + es[0].Error()
	}
	var b strings.Builder
	b.WriteString("invalid config: ")
	for i, e := range es {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(e.Error())
	}
	return b.String()
}
