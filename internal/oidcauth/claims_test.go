package oidcauth

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestCheckRequirements(t *testing.T) {
	var claims map[string]any
	if err := json.Unmarshal([]byte(`{
		"sub": "u1",
		"email": "a@example.com",
		"email_verified": true,
		"admin": false,
		"groups": ["uploaders", "staff", 7],
		"level": 3,
		"big": 12345678901,
		"ratio": 0.5,
		"empty": [],
		"obj": {"x": "y"},
		"realm_access": {"roles": ["editor"]},
		"https://example.com/claims.tier": "gold",
		"null": null
	}`), &claims); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		reqs []Requirement
		fail string // claim named in the error; "" = holds
	}{
		{"none", nil, ""},
		{"string equal", []Requirement{{"email", []string{"x", "a@example.com"}}}, ""},
		{"string differs", []Requirement{{"email", []string{"A@example.com"}}}, "email"},
		{"string is not a prefix match", []Requirement{{"email", []string{"a@example"}}}, "email"},
		{"array contains", []Requirement{{"groups", []string{"staff"}}}, ""},
		{"array lacks", []Requirement{{"groups", []string{"admins"}}}, "groups"},
		{"array number element", []Requirement{{"groups", []string{"7"}}}, ""},
		{"empty array", []Requirement{{"empty", []string{""}}}, "empty"},
		{"bool true", []Requirement{{"email_verified", []string{"true"}}}, ""},
		{"bool false", []Requirement{{"admin", []string{"false"}}}, ""},
		{"bool mismatch", []Requirement{{"admin", []string{"true"}}}, "admin"},
		{"bool is not 1", []Requirement{{"email_verified", []string{"1"}}}, "email_verified"},
		{"integer", []Requirement{{"level", []string{"3"}}}, ""},
		{"integer not float form", []Requirement{{"level", []string{"3.0"}}}, "level"},
		{"large integer", []Requirement{{"big", []string{"12345678901"}}}, ""},
		{"fraction", []Requirement{{"ratio", []string{"0.5"}}}, ""},
		{"object never matches", []Requirement{{"obj", []string{"y", `{"x":"y"}`}}}, "obj"},
		{"null never matches", []Requirement{{"null", []string{"", "null"}}}, "null"},
		{"missing", []Requirement{{"tier", []string{"gold"}}}, "tier"},
		{"no values", []Requirement{{"email", nil}}, "email"},
		{"dotted path", []Requirement{{"realm_access.roles", []string{"editor"}}}, ""},
		{"dotted path lacks", []Requirement{{"realm_access.roles", []string{"admin"}}}, "realm_access.roles"},
		{"dotted path missing", []Requirement{{"realm_access.groups", []string{"editor"}}}, "realm_access.groups"},
		{"dotted path into a string", []Requirement{{"email.x", []string{"a"}}}, "email.x"},
		{"claim name with dots", []Requirement{{"https://example.com/claims.tier", []string{"gold"}}}, ""},
		{"all must hold", []Requirement{{"groups", []string{"staff"}}, {"email_verified", []string{"false"}}}, "email_verified"},
		{"first failure named", []Requirement{{"level", []string{"9"}}, {"admin", []string{"true"}}}, "level"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckRequirements(claims, tt.reqs)
			if tt.fail == "" {
				if err != nil {
					t.Fatalf("err = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrForbidden) {
				t.Fatalf("err = %v, want ErrForbidden", err)
			}
			if !strings.Contains(err.Error(), `"`+tt.fail+`"`) {
				t.Fatalf("err = %q, want it to name %q", err, tt.fail)
			}
		})
	}
}

func TestCheckRequirementsGoValues(t *testing.T) {
	claims := map[string]any{"roles": []string{"a", "b"}, "n": 42, "m": int64(-1), "j": json.Number("1e3")}
	for _, r := range []Requirement{{"roles", []string{"b"}}, {"n", []string{"42"}}, {"m", []string{"-1"}}, {"j", []string{"1e3"}}} {
		if err := CheckRequirements(claims, []Requirement{r}); err != nil {
			t.Errorf("%v: %v", r, err)
		}
	}
}

func TestCheckRequirementsDoesNotLeakValues(t *testing.T) {
	err := CheckRequirements(map[string]any{"email": "secret@example.com"}, []Requirement{{"email", []string{"x"}}})
	if err == nil || strings.Contains(err.Error(), "secret@example.com") {
		t.Fatalf("err = %v", err)
	}
}
