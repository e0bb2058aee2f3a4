package config

import "strings"

// envNames maps the Go field names that the rls and model packages put in
// their errors to the environment variables that set them. Longer names come
// first, so a name is never replaced by a prefix of it.
var envNames = strings.NewReplacer( //nolint:gochecknoglobals // constant lookup table
	"rls.Config: JWKSDisabled needs JWTSecret", "JWKS_DISABLED=true needs SUPABASE_JWT_SECRET",
	"rls.Config: minting needs SigningKey (ES256) or JWTSecret (legacy HS256)", "minting user tokens needs JWT_SIGNING_KEY (ES256) or SUPABASE_JWT_SECRET (legacy HS256)",
	"rls.Config.WebhookTolerance, WebhookMaxBodyBytes and WebhookReplayCacheSize", "WEBHOOK_TOLERANCE, WEBHOOK_MAX_BODY_BYTES and WEBHOOK_REPLAY_CACHE_SIZE",
	"rls.Config.JWKSUnknownKIDInterval and JWKSHTTPTimeout", "JWKS_UNKNOWN_KID_INTERVAL and JWKS_HTTP_TIMEOUT",
	"rls.Config.JWKSRefreshInterval", "JWKS_REFRESH_INTERVAL",
	"rls.Config.JWKSURL", "SUPABASE_JWKS_URL",
	"rls.Config.Leeway", "JWT_LEEWAY",
	"rls.Config.MaxTokenBytes", "the maximum token size",
	"rls.Config.ServiceKey", "SUPABASE_SECRET_KEY (or SUPABASE_SERVICE_ROLE_KEY)",
	"rls.Config.SigningKeyID", "JWT_SIGNING_KEY_ID",
	"rls.Config.SigningKey", "JWT_SIGNING_KEY",
	"rls.Config.SupabaseURL", "SUPABASE_URL",
	"rls.Config.TokenTTL", "MINTED_TOKEN_TTL",
	"rls.Config.WebhookMode", "WEBHOOK_MODE",
	"rls.Config.WebhookSecret", "WEBHOOK_SECRET",
	"rls.Config.WebhookSigningSecret", "WEBHOOK_SIGNING_SECRET",
	"rls.Config.JWTSecret", "SUPABASE_JWT_SECRET",
	"model.Config.Provider", "ORCHABLE_MODEL_PROVIDER",
	"model.Config.BaseURL", "GEMINI_BASE_URL",
	"model.Config.RequestTimeout", "GEMINI_REQUEST_TIMEOUT",
	"model.Config.MaxKeyAttempts", "GEMINI_MAX_KEY_ATTEMPTS",
	"model.Config.Pool.Limits", "GEMINI_RATE_LIMITS",
	"model.Config.Pool.OperatorKeys", "GEMINI_OPERATOR_KEYS",
	"model.Config.Offline", "ORCHABLE_OFFLINE_LATENCY/ORCHABLE_OFFLINE_JITTER",
	"model.Config.Cache.TTL", "GEMINI_CACHE_TTL",
	"model.Config.KEKs", "ORCHABLE_KEKS",
)

// EnvNames returns err with the Go field names of rls.Config and
// model.Config in its text replaced by the environment variables that set
// them, so a configuration error tells the operator what to change. The
// result still matches err with errors.Is and errors.As. Nil stays nil.
func EnvNames(err error) error {
	if err == nil {
		return nil
	}
	msg := envNames.Replace(err.Error())
	if msg == err.Error() {
		return err
	}
	return &envError{msg: msg, err: err}
}

type envError struct {
	msg string
	err error
}

func (e *envError) Error() string { return e.msg }
func (e *envError) Unwrap() error { return e.err }
