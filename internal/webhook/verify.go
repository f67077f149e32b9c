package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Verify checks a delivery the way a receiving application does (the
// recipe in the Webhook doc comment): HMAC-SHA256 over "<t>.<body>",
// compared in constant time, with 5 minutes of tolerance around now. It
// returns the signature's time.
func Verify(secret []byte, header string, body []byte, now time.Time) (int64, error) {
	var ts, v1 string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			v1 = v
		}
	}
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("timestamp %q", ts)
	}
	if d := now.Sub(time.Unix(t, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return 0, errors.New("timestamp outside the tolerance")
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	if !hmac.Equal([]byte(hex.EncodeToString(mac.Sum(nil))), []byte(v1)) {
		return 0, errors.New("signature mismatch")
	}
	return t, nil
}
