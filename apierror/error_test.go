package apierror_test

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/apierror"
)

func TestError(t *testing.T) {
	t.Parallel()
	reason := errors.New("token expired")
	tests := []struct {
		name        string
		givenCause  error
		expectError string
	}{
		{name: "NoCause", expectError: "invalid_token (401): token expired"},
		{name: "CauseRepeatsMessage", givenCause: fmt.Errorf("%w: exp 12:00", reason), expectError: "invalid_token (401): token expired: exp 12:00"},
		{name: "OtherCause", givenCause: errors.New("parse error"), expectError: "invalid_token (401): token expired: parse error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := apierror.New(http.StatusUnauthorized, "invalid_token", "token expired", tt.givenCause)
			require.EqualError(t, err, tt.expectError)
			require.Equal(t, http.StatusUnauthorized, err.StatusCode())
			if tt.givenCause != nil {
				require.ErrorIs(t, err, tt.givenCause)
			}
			wrapped := fmt.Errorf("handler: %w", err)
			ae, ok := errors.AsType[*apierror.Error](wrapped)
			require.True(t, ok)
			require.Equal(t, "invalid_token", ae.Code)
		})
	}
}
