package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// tolerance is how far a signature's time may be from the receiver's
// clock: further off, the request may be a replay.
const tolerance = 5 * time.Minute

// VerifyStandard checks a delivery the way the Standard Webhooks libraries
// do: the webhook-signature header holds, among space-separated
// "<version>,<signature>" entries, a v1 entry equal (compared in constant
// time) to the base64 of HMAC-SHA256 keyed by StandardKey(secret) over
// "<webhook-id>.<webhook-timestamp>.<body>", and webhook-timestamp is
// within 5 minutes of now. It returns webhook-id: the event id, stable
// across attempts, to de-duplicate by.
func VerifyStandard(secret []byte, h http.Header, body []byte, now time.Time) (string, error) {
	id, ts, sigs := h.Get("Webhook-Id"), h.Get("Webhook-Timestamp"), h.Get("Webhook-Signature")
	if id == "" || ts == "" || sigs == "" {
		return "", errors.New("webhook-id, webhook-timestamp and webhook-signature are required")
	}
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return "", fmt.Errorf("webhook-timestamp %q", ts)
	}
	if err := checkTime(t, now); err != nil {
		return "", err
	}
	key, err := StandardKey(secret)
	if err != nil {
		return "", err
	}
	want := []byte(strings.TrimPrefix(signStandard(key, id, t, body), "v1,"))
	for _, entry := range strings.Split(sigs, " ") {
		version, sig, ok := strings.Cut(entry, ",")
		if ok && version == "v1" && hmac.Equal([]byte(sig), want) {
			return id, nil
		}
	}
	return "", errors.New("signature mismatch")
}

// Verify checks the X-Upload-Signature header of a delivery, the scheme of
// earlier releases (the recipe in the Webhook doc comment): HMAC-SHA256
// keyed by the secret's bytes over "<t>.<body>", as lowercase hex,
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
	if err := checkTime(t, now); err != nil {
		return 0, err
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	if !hmac.Equal([]byte(hex.EncodeToString(mac.Sum(nil))), []byte(v1)) {
		return 0, errors.New("signature mismatch")
	}
	return t, nil
}

// checkTime refuses a signature time t further than the tolerance from now.
func checkTime(t int64, now time.Time) error {
	if d := now.Sub(time.Unix(t, 0)); d > tolerance || d < -tolerance {
		return errors.New("timestamp outside the tolerance")
	}
	return nil
}
