package caddyupload

import (
	"fmt"
	"unicode"
	"unicode/utf8"
)

// checkFilename enforces the API's filename rules: at most 255 bytes of
// UTF-8 without control characters.
func checkFilename(name string) *apiError {
	switch {
	case name == "":
		return errInvalid("filename is required")
	case len(name) > 255:
		return errInvalid("filename is longer than 255 bytes")
	case !utf8.ValidString(name):
		return errInvalid("filename is not valid UTF-8")
	}
	for _, r := range name {
		switch {
		case unicode.IsControl(r):
			return errInvalid("filename contains a control character")
		case unicode.Is(unicode.Cf, r):
			// Bidi overrides (U+202E) and other invisible format
			// characters can disguise an extension in a download dialog.
			return errInvalid("filename contains an invisible formatting character")
		}
	}
	return nil
}

const (
	maxMetadataEntries = 32
	maxMetadataKey     = 128
	maxMetadataValue   = 1024
	// maxMetadataBytes bounds keys and values together: the record and
	// each of its webhook events carry them.
	maxMetadataBytes = 4096
)

func checkMetadata(md map[string]string) *apiError {
	if len(md) > maxMetadataEntries {
		return errInvalid(fmt.Sprintf("metadata has more than %d entries", maxMetadataEntries))
	}
	total := 0
	for k, v := range md {
		if total += len(k) + len(v); total > maxMetadataBytes {
			return errInvalid(fmt.Sprintf("metadata keys and values add up to more than %d bytes", maxMetadataBytes))
		}
		if k == "" || len(k) > maxMetadataKey || len(v) > maxMetadataValue {
			return errInvalid("metadata keys must be 1–128 bytes and values at most 1024 bytes")
		}
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return errInvalid("metadata must be valid UTF-8")
		}
		for _, r := range k + v {
			if unicode.IsControl(r) && r != '\n' && r != '\t' {
				return errInvalid("metadata contains a control character")
			}
		}
	}
	return nil
}

func isHexSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}
