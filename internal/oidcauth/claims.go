package oidcauth

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Requirement holds when the claim named Claim (a dotted path such as
// "realm_access.roles" is allowed) has one of Values: a string equal to
// one, an array with an element equal to one, a bool whose "true"/"false"
// is one, or a number whose decimal form is one.
type Requirement struct {
	Claim  string
	Values []string
}

// CheckRequirements returns nil when every requirement holds, else an
// error wrapping ErrForbidden naming the first claim that failed (never
// its value, which may be personal data).
func CheckRequirements(claims map[string]any, reqs []Requirement) error {
	for _, r := range reqs {
		v, ok := Lookup(claims, r.Claim)
		if !ok {
			return fmt.Errorf("%w: claim %q missing", ErrForbidden, r.Claim)
		}
		if !matches(v, r.Values) {
			return fmt.Errorf("%w: claim %q has none of the required values", ErrForbidden, r.Claim)
		}
	}
	return nil
}

func matches(v any, values []string) bool {
	switch v := v.(type) {
	case []any:
		for _, e := range v {
			if s, ok := scalarString(e); ok && slices.Contains(values, s) {
				return true
			}
		}
		return false
	case []string:
		for _, e := range v {
			if slices.Contains(values, e) {
				return true
			}
		}
		return false
	}
	s, ok := scalarString(v)
	return ok && slices.Contains(values, s)
}

// scalarString renders strings, bools and numbers as a policy would write
// them; other types never match.
func scalarString(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case bool:
		return strconv.FormatBool(v), true
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), true
	case json.Number:
		return v.String(), true
	case int:
		return strconv.Itoa(v), true
	case int64:
		return strconv.FormatInt(v, 10), true
	}
	return "", false
}

// Lookup finds a claim by name. A name with dots is first tried as a whole
// (URL-style claim names contain dots), then as a path into nested
// objects, e.g. "realm_access.roles".
func Lookup(claims map[string]any, name string) (any, bool) {
	if v, ok := claims[name]; ok {
		return v, true
	}
	for i := 0; i < len(name); i++ {
		j := strings.IndexByte(name[i:], '.')
		if j < 0 {
			break
		}
		i += j
		if sub, ok := claims[name[:i]].(map[string]any); ok {
			if v, ok := Lookup(sub, name[i+1:]); ok {
				return v, true
			}
		}
	}
	return nil, false
}
