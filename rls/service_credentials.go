package rls

import (
	"errors"
	"strings"
)

// ServiceCredentials holds the service-role credential: a secret key ("sb_secret_…") or the
// legacy service_role JWT. It BYPASSES Row Level Security. It exists for the sweeper only, to
// find due work across tenants (ids and owners, never content) and to re-queue expired leases;
// everything done on a user's behalf uses that user's token (forwarded or minted) instead.
//
// This is the only place the credential is loaded, so `grep -rn NewServiceCredentials` lists
// every use of elevated access.
//
//nolint:recvcheck // String and GoString take a value so that a copy printed with %v or %#v stays redacted
type ServiceCredentials struct {
	key Secret
}

// NewServiceCredentials loads the service-role credential from Config.ServiceKey. It fails if
// the key is empty, or is a publishable key (which would silently act as anon).
func NewServiceCredentials(cfg *Config) (*ServiceCredentials, error) {
	key := strings.TrimSpace(cfg.ServiceKey.Reveal())
	switch {
	case key == "":
		return nil, errors.New("rls.Config.ServiceKey is required for service access (secret key or service_role JWT)")
	case strings.HasPrefix(key, "sb_publishable_"):
		return nil, errors.New("rls.Config.ServiceKey is a publishable key; service access needs the secret key (sb_secret_…)")
	}
	return &ServiceCredentials{key: Secret(key)}, nil
}

// APIKey returns the credential for the "apikey" header of Supabase API requests.
func (s *ServiceCredentials) APIKey() Secret { return s.key }

// Authorization returns the value of the "Authorization" header for service requests. A secret
// key may be sent as a bearer only because it equals the apikey header (Supabase rejects non-JWT
// bearers otherwise); a legacy service_role JWT is a bearer token in its own right.
func (s *ServiceCredentials) Authorization() Secret { return "Bearer " + s.key }

// String implements fmt.Stringer without revealing the key.
func (ServiceCredentials) String() string { return "rls.ServiceCredentials{" + redacted + "}" }

// GoString implements fmt.GoStringer without revealing the key.
func (s ServiceCredentials) GoString() string { return s.String() }
