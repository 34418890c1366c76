package config

import "testing"

func TestDecodeSend(t *testing.T) {
	tests := []struct{ in, want string }{
		{``, ""},
		{`GET / HTTP/1.0\r\n\r\n`, "GET / HTTP/1.0\r\n\r\n"},
		{`a\tb\\c`, "a\tb\\c"},
		{`keep \x and trailing \`, `keep \x and trailing \`},
	}
	for _, tt := range tests {
		if got := DecodeSend(tt.in); got != tt.want {
			t.Errorf("DecodeSend(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if got := DecodeSend(EncodeSend(tt.want)); got != tt.want {
			t.Errorf("DecodeSend(EncodeSend(%q)) = %q", tt.want, got)
		}
	}
}
