package oidcauth

import (
	"errors"
	"fmt"
)

// Errors returned by Verify and CheckRequirements, wrapped with a short
// reason that is safe to log (it never contains the token).
var (
	// ErrInvalidToken: the token is not acceptable (malformed, bad
	// signature, disallowed algorithm, wrong issuer or audience, expired).
	ErrInvalidToken = errors.New("invalid token")
	// ErrUnavailable: the provider's discovery document or signing keys
	// cannot be fetched, so the token cannot be judged yet.
	ErrUnavailable = errors.New("identity provider unavailable")
	// ErrForbidden: the token is valid but a claim requirement fails.
	ErrForbidden = errors.New("forbidden")
)

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidToken, fmt.Sprintf(format, args...))
}
