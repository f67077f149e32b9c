package fakes3

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// maxFormFields bounds the form fields before the file, as S3 does.
const maxFormFields = 20 << 10

func isForm(r *http.Request) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && mt == "multipart/form-data"
}

// postObject is a browser form upload authorized by a signed POST policy.
func (s *Server) postObject(w http.ResponseWriter, r *http.Request, bucketName string) {
	if e := s.postUpload(w, r, bucketName); e != nil {
		fail(w, r, e)
	}
}

// policyFailed is S3's refusal of a form that the policy does not allow.
func policyFailed(format string, args ...any) *apiError {
	return errorf(http.StatusForbidden, "AccessDenied", "Invalid according to Policy: "+format, args...)
}

func (s *Server) postUpload(w http.ResponseWriter, r *http.Request, bucketName string) *apiError {
	s.mu.Lock()
	exists := s.buckets[bucketName] != nil
	s.mu.Unlock()
	if !exists {
		return errNoSuchBucket
	}
	mr, err := r.MultipartReader()
	if err != nil {
		return errorf(http.StatusBadRequest, "MalformedPOSTRequest", "The body of your POST request is not well-formed multipart/form-data.")
	}

	// The fields come first; the file, last. Everything after it is ignored.
	fields := map[string]string{} // by lower-case name
	total := 0
	var file io.Reader
	var filename string
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return errorf(http.StatusBadRequest, "InvalidArgument", "POST requires exactly one file upload per request.")
		}
		if err != nil {
			return errorf(http.StatusBadRequest, "MalformedPOSTRequest", "The body of your POST request is not well-formed multipart/form-data.")
		}
		name := strings.ToLower(p.FormName())
		if name == "file" {
			file, filename = p, p.FileName()
			break
		}
		v, err := io.ReadAll(io.LimitReader(p, maxFormFields+1))
		total += len(v)
		if err != nil || total > maxFormFields {
			return errorf(http.StatusBadRequest, "MaxPostPreDataLengthExceededError", "Your POST request fields preceding the upload file were too large.")
		}
		if _, dup := fields[name]; dup {
			return errorf(http.StatusBadRequest, "InvalidArgument", "Field %q appears more than once.", p.FormName())
		}
		fields[name] = string(v)
	}

	minSize, maxSize, e := s.checkPolicy(fields, bucketName, filename)
	if e != nil {
		return e
	}
	key := strings.ReplaceAll(fields["key"], "${filename}", filename)
	data, err := io.ReadAll(io.LimitReader(file, maxSize+1))
	if err != nil {
		return errIncomplete
	}
	if int64(len(data)) > maxSize {
		return errTooLarge
	}
	if int64(len(data)) < minSize {
		return errTooSmall
	}
	h := http.Header{}
	for k, v := range fields {
		h.Set(k, v)
	}
	sha, e := checkDigests(h, data)
	if e != nil {
		return e
	}
	obj := &object{data: data, etag: etagOf(data), modified: s.now().UTC(), header: objectHeader(h), sha256: sha}
	s.mu.Lock()
	b := s.buckets[bucketName]
	if b == nil {
		s.mu.Unlock()
		return errNoSuchBucket
	}
	b.objects[key] = obj
	s.mu.Unlock()

	location := "/" + bucketName + "/" + canonicalPath(key)
	w.Header().Set("ETag", obj.etag)
	w.Header().Set("Location", location)
	if redirect := fields["success_action_redirect"]; redirect != "" {
		if u, err := url.Parse(redirect); err == nil && u.Scheme != "" {
			q := u.Query()
			q.Set("bucket", bucketName)
			q.Set("key", key)
			q.Set("etag", obj.etag)
			u.RawQuery = q.Encode()
			w.Header().Set("Location", u.String())
			w.WriteHeader(http.StatusSeeOther)
			return nil
		}
	}
	switch fields["success_action_status"] {
	case "200":
		w.WriteHeader(http.StatusOK)
	case "201":
		writeXML(w, r, http.StatusCreated, struct {
			XMLName  xml.Name `xml:"PostResponse"`
			Location string   `xml:"Location"`
			Bucket   string   `xml:"Bucket"`
			Key      string   `xml:"Key"`
			ETag     string   `xml:"ETag"`
		}{Location: location, Bucket: bucketName, Key: key, ETag: obj.etag})
	default:
		w.WriteHeader(http.StatusNoContent)
	}
	return nil
}

// checkPolicy verifies the policy's signature and expiry and every one of
// its conditions against the form, and that the policy names every field;
// it returns the allowed size range of the file.
func (s *Server) checkPolicy(fields map[string]string, bucketName, filename string) (minSize, maxSize int64, e *apiError) {
	policy := fields["policy"]
	if policy == "" {
		return 0, 0, errAccessDenied // an unsigned form is anonymous
	}
	if fields["x-amz-algorithm"] != sigAlgorithm {
		return 0, 0, errorf(http.StatusBadRequest, "InvalidArgument", "x-amz-algorithm must be AWS4-HMAC-SHA256")
	}
	if fields["x-amz-security-token"] != "" {
		return 0, 0, errorf(http.StatusForbidden, "InvalidToken", "The provided token is malformed or otherwise invalid.")
	}
	t, err := time.Parse(amzDateFormat, fields["x-amz-date"])
	if err != nil {
		return 0, 0, errorf(http.StatusBadRequest, "InvalidArgument", "x-amz-date must be in the ISO8601 Long Format")
	}
	if e := s.checkCredential(fields["x-amz-credential"], t, "InvalidArgument"); e != nil {
		return 0, 0, e
	}
	k := hmacSHA256([]byte("AWS4"+s.SecretKey), []byte(t.Format("20060102")))
	k = hmacSHA256(k, []byte(s.Region))
	k = hmacSHA256(k, []byte("s3"))
	k = hmacSHA256(k, []byte("aws4_request"))
	want := hex.EncodeToString(hmacSHA256(k, []byte(policy)))
	if !hmac.Equal([]byte(want), []byte(fields["x-amz-signature"])) {
		return 0, 0, errSignatureMismatch
	}

	raw, err := base64.StdEncoding.DecodeString(policy)
	if err != nil {
		return 0, 0, errorf(http.StatusBadRequest, "InvalidPolicyDocument", "Invalid Policy: Invalid 'Base64' encoding.")
	}
	var doc struct {
		Expiration string            `json:"expiration"`
		Conditions []json.RawMessage `json:"conditions"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return 0, 0, errorf(http.StatusBadRequest, "InvalidPolicyDocument", "Invalid Policy: Invalid JSON.")
	}
	exp, err := time.Parse(time.RFC3339, doc.Expiration)
	if err != nil {
		return 0, 0, errorf(http.StatusBadRequest, "InvalidPolicyDocument", "Invalid Policy: Invalid 'expiration' value: '%s'", doc.Expiration)
	}
	if !s.now().Before(exp) {
		return 0, 0, policyFailed("Policy expired.")
	}
	if fields["key"] == "" {
		return 0, 0, errorf(http.StatusBadRequest, "InvalidArgument", "Bucket POST must contain a field named 'key'.  If it is specified, please check the order of the fields.")
	}

	// The values conditions are checked against: the form's, with the
	// bucket from the URL and the key as it will be stored.
	values := map[string]string{}
	for k, v := range fields {
		values[k] = v
	}
	values["bucket"] = bucketName
	values["key"] = strings.ReplaceAll(fields["key"], "${filename}", filename)
	covered := map[string]bool{"bucket": true}
	minSize, maxSize = 0, maxObjectSize
	for _, c := range doc.Conditions {
		op, field, arg, lo, hi, e := parseCondition(c)
		if e != nil {
			return 0, 0, e
		}
		if op == "content-length-range" {
			minSize, maxSize = lo, min(hi, maxObjectSize)
			continue
		}
		covered[field] = true
		v, present := values[field]
		if !present {
			return 0, 0, policyFailed("Policy Condition failed: [%q, \"$%s\", %q]", op, field, arg)
		}
		if op == "eq" && v != arg || op == "starts-with" && !strings.HasPrefix(v, arg) {
			return 0, 0, policyFailed("Policy Condition failed: [%q, \"$%s\", %q]", op, field, arg)
		}
	}
	for name := range fields {
		switch {
		case name == "policy", name == "x-amz-signature", name == "file", strings.HasPrefix(name, "x-ignore-"), covered[name]:
		default:
			return 0, 0, policyFailed("Extra input fields: %s", name)
		}
	}
	return minSize, maxSize, nil
}

// parseCondition reads one policy condition: {"field": "value"} (eq),
// ["eq"|"starts-with", "$field", "value"] or ["content-length-range", min,
// max]. Field names are compared in lower case.
func parseCondition(raw json.RawMessage) (op, field, arg string, lo, hi int64, e *apiError) {
	bad := func(why string) *apiError {
		return errorf(http.StatusBadRequest, "InvalidPolicyDocument", "Invalid Policy: Invalid Condition: %s", why)
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '{' {
		var m map[string]string
		if err := json.Unmarshal(raw, &m); err != nil || len(m) != 1 {
			return "", "", "", 0, 0, bad("a map condition must name one field with a string value")
		}
		for k, v := range m {
			return "eq", strings.ToLower(k), v, 0, 0, nil
		}
	}
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil || len(list) != 3 {
		return "", "", "", 0, 0, bad("want a map or a list of three")
	}
	if err := json.Unmarshal(list[0], &op); err != nil {
		return "", "", "", 0, 0, bad("the operation must be a string")
	}
	op = strings.ToLower(op)
	switch op {
	case "eq", "starts-with":
		var f string
		if json.Unmarshal(list[1], &f) != nil || !strings.HasPrefix(f, "$") || json.Unmarshal(list[2], &arg) != nil {
			return "", "", "", 0, 0, bad(fmt.Sprintf("%s wants \"$field\" and a string", op))
		}
		return op, strings.ToLower(f[1:]), arg, 0, 0, nil
	case "content-length-range":
		lo, err1 := number(list[1])
		hi, err2 := number(list[2])
		if err1 != nil || err2 != nil || lo < 0 || hi < lo {
			return "", "", "", 0, 0, bad("content-length-range wants 0 <= min <= max")
		}
		return op, "", "", lo, hi, nil
	}
	return "", "", "", 0, 0, bad(fmt.Sprintf("unknown operation %q", op))
}

// number reads an integer given as a JSON number or string.
func number(raw json.RawMessage) (int64, error) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return strconv.ParseInt(s, 10, 64)
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil {
		return 0, err
	}
	return n.Int64()
}

func hmacSHA256(key, data []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(data)
	return h.Sum(nil)
}
