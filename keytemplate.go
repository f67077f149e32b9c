package caddyupload

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/caddyupload/caddyupload/internal/pct"
)

// keyTemplate is a parsed `key` setting: literal text and placeholders.
// Literal text is the operator's; every placeholder value that comes from a
// caller is escaped so that it can never add a path segment, a "..", or a
// control character to the key.
type keyTemplate struct {
	parts []keyPart
	// prefix is the literal text before the first placeholder: every key
	// the route issues starts with it.
	prefix string
}

type keyPart struct {
	literal string
	name    string // placeholder name when literal is ""
}

// keyVars are the values a key is rendered from.
type keyVars struct {
	UUID    string
	ID      string
	Ext     string
	Subject string
	Claims  map[string]any
	Now     time.Time
}

const maxKeyLen = 1024

func parseKeyTemplate(s string) (keyTemplate, error) {
	var kt keyTemplate
	if s == "" {
		return kt, fmt.Errorf("empty key template")
	}
	if strings.HasPrefix(s, "/") {
		return kt, fmt.Errorf("key template %q must not start with /", s)
	}
	if !utf8.ValidString(s) {
		return kt, fmt.Errorf("key template %q is not valid UTF-8", s)
	}
	unique := false
	rest := s
	for rest != "" {
		open := strings.IndexByte(rest, '{')
		if open < 0 {
			kt.parts = append(kt.parts, keyPart{literal: rest})
			break
		}
		if open > 0 {
			kt.parts = append(kt.parts, keyPart{literal: rest[:open]})
		}
		end := strings.IndexByte(rest[open:], '}')
		if end < 0 {
			return kt, fmt.Errorf("key template %q: unclosed {", s)
		}
		name := rest[open+1 : open+end]
		switch {
		case name == "uuid" || name == "id":
			unique = true
		case name == "ext" || name == "user" || name == "year" || name == "month" || name == "day":
		case strings.HasPrefix(name, "claims.") && len(name) > len("claims."):
		default:
			return kt, fmt.Errorf("key template %q: unknown placeholder {%s}", s, name)
		}
		kt.parts = append(kt.parts, keyPart{name: name})
		rest = rest[open+end+1:]
	}
	for _, p := range kt.parts {
		if p.name != "" {
			break
		}
		kt.prefix += p.literal
	}
	for _, p := range kt.parts {
		if p.name != "" {
			continue
		}
		if strings.ContainsRune(p.literal, '}') {
			return kt, fmt.Errorf("key template %q: stray }", s)
		}
		for _, r := range p.literal {
			if r < 0x20 || r == 0x7f || r == '\\' {
				return kt, fmt.Errorf("key template %q: control character or backslash", s)
			}
		}
	}
	// Render with harmless values to reject "..", "//" and "." segments the
	// literal text would create.
	probe := kt.render(keyVars{UUID: "u", ID: "i", Subject: "s", Now: time.Unix(0, 0)})
	for _, seg := range strings.Split(probe, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return kt, fmt.Errorf("key template %q: empty, . or .. path segment", s)
		}
	}
	if !unique {
		return kt, fmt.Errorf("key template %q must contain {uuid} or {id}, or uploads would overwrite each other", s)
	}
	return kt, nil
}

func (kt keyTemplate) render(v keyVars) string {
	var b strings.Builder
	for _, p := range kt.parts {
		if p.name == "" {
			b.WriteString(p.literal)
			continue
		}
		switch p.name {
		case "uuid":
			b.WriteString(v.UUID)
		case "id":
			b.WriteString(v.ID)
		case "ext":
			b.WriteString(v.Ext) // chosen from a fixed table: ".jpg"
		case "user":
			b.WriteString(escapeKeyValue(v.Subject))
		case "year":
			b.WriteString(strconv.Itoa(v.Now.UTC().Year()))
		case "month":
			fmt.Fprintf(&b, "%02d", int(v.Now.UTC().Month()))
		case "day":
			fmt.Fprintf(&b, "%02d", v.Now.UTC().Day())
		default: // claims.NAME
			b.WriteString(escapeKeyValue(claimString(v.Claims, strings.TrimPrefix(p.name, "claims."))))
		}
	}
	return b.String()
}

// claimString renders a scalar claim; anything else is empty.
func claimString(claims map[string]any, name string) string {
	switch c := claims[name].(type) {
	case string:
		return c
	case bool:
		return strconv.FormatBool(c)
	case float64:
		return strconv.FormatFloat(c, 'f', -1, 64)
	case int64:
		return strconv.FormatInt(c, 10)
	case int:
		return strconv.Itoa(c)
	}
	return ""
}

const maxKeyValueLen = 64

// escapeKeyValue makes a caller-derived value safe as part of one path
// segment: ASCII letters, digits, '-', '_' and non-leading '.' stay; every
// other byte becomes %XX. An empty value becomes "_". A value longer than
// 64 bytes keeps its first 48 (at a rune boundary) followed by '~' and 16
// hex digits of its SHA-256, so that two long values never share a key
// prefix; '~' is escaped everywhere else, so no short value looks like that.
func escapeKeyValue(s string) string {
	if s == "" {
		return "_"
	}
	suffix := ""
	if len(s) > maxKeyValueLen {
		sum := sha256.Sum256([]byte(s))
		suffix = "~" + hex.EncodeToString(sum[:8])
		cut := maxKeyValueLen - 16
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	// A leading dot would make a hidden file or a "." / ".." segment.
	if s[0] == '.' {
		return "%2E" + keyValueChars.Escape(s[1:]) + suffix
	}
	return keyValueChars.Escape(s) + suffix
}

// keyValueChars are the bytes a caller's value keeps in a key.
var keyValueChars = pct.Alnum("-_.")
