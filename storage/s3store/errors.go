package s3store

import (
	"errors"
	"fmt"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/caddyupload/caddyupload/storage"
)

// errorCode is the S3 error code of err ("NoSuchKey", ...), or "".
func errorCode(err error) string {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode()
	}
	return ""
}

// httpStatus is the HTTP status of the response that failed, or 0. HEAD
// answers have no body, so a 404 is all some servers give.
func httpStatus(err error) int {
	var respErr *smithyhttp.ResponseError
	if errors.As(err, &respErr) {
		return respErr.HTTPStatusCode()
	}
	return 0
}

// notFound reports a missing object, upload or bucket-level resource named
// by one of codes, or a bare 404.
func notFound(err error, codes ...string) bool {
	code := errorCode(err)
	for _, c := range codes {
		if code == c {
			return true
		}
	}
	return httpStatus(err) == 404
}

// unavailable wraps an unexpected failure. SDK errors name the operation,
// status and request id; they carry neither credentials nor signed URLs.
func unavailable(op string, err error) error {
	return fmt.Errorf("s3 %s: %w: %w", op, storage.ErrUnavailable, err)
}
