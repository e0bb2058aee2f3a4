package rls

import "log/slog"

// redacted is what a Secret prints as.
const redacted = "[redacted]"

// Secret holds a credential (a JWT secret, a private key, a webhook secret, an API key). Its
// String, GoString, LogValue and MarshalText methods print "[redacted]", so a Secret that ends up
// in a log line, a %v or a JSON document does not leak. Read the value with [Secret.Reveal], and
// only at the point of use.
type Secret string

// String implements fmt.Stringer and never returns the secret.
func (Secret) String() string { return redacted }

// GoString implements fmt.GoStringer (the %#v verb) and never returns the secret.
func (Secret) GoString() string { return redacted }

// LogValue implements slog.LogValuer and never returns the secret.
func (Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalText implements encoding.TextMarshaler (and so JSON encoding) and never returns the secret.
func (Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// Reveal returns the secret value. Call it only where the value is used (signing, comparing,
// sending it to Supabase), never to log or format it.
func (s Secret) Reveal() string { return string(s) }

// IsSet reports whether the secret is non-empty.
func (s Secret) IsSet() bool { return s != "" }
