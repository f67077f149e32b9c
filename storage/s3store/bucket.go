package s3store

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// EnsureBucket creates the bucket unless it already exists and is ours.
func (s *Store) EnsureBucket(ctx context.Context) error {
	if _, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &s.bucket}); err == nil {
		return nil
	}
	in := &s3.CreateBucketInput{Bucket: &s.bucket}
	// Only AWS wants a location constraint, and not for its default region.
	if s.client.Options().BaseEndpoint == nil && s.region != "us-east-1" {
		in.CreateBucketConfiguration = &types.CreateBucketConfiguration{
			LocationConstraint: types.BucketLocationConstraint(s.region),
		}
	}
	_, err := s.client.CreateBucket(ctx, in)
	switch {
	case err == nil, errorCode(err) == "BucketAlreadyOwnedByYou":
		return nil
	case errorCode(err) == "BucketAlreadyExists":
		// Some servers answer this for a bucket of the same owner too.
		if _, herr := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &s.bucket}); herr == nil {
			return nil
		}
	}
	return unavailable("create bucket", err)
}

// CORSRule is one bucket CORS rule.
type CORSRule struct {
	AllowedOrigins []string
	AllowedMethods []string
	AllowedHeaders []string
	ExposeHeaders  []string
	MaxAgeSeconds  int32
}

// UploadCORS is the rule browsers need to upload straight to the bucket from
// origins: presigned GET, PUT (single and parts), POST forms and HEAD, any
// request header, and ETag readable (multipart clients send it back).
func UploadCORS(origins []string) CORSRule {
	return CORSRule{
		AllowedOrigins: origins,
		AllowedMethods: []string{"GET", "PUT", "POST", "HEAD"},
		AllowedHeaders: []string{"*"},
		ExposeHeaders:  []string{"ETag"},
		MaxAgeSeconds:  3000,
	}
}

// PutCORS replaces the bucket's CORS configuration with UploadCORS(origins).
func (s *Store) PutCORS(ctx context.Context, origins []string) error {
	r := UploadCORS(origins)
	_, err := s.client.PutBucketCors(ctx, &s3.PutBucketCorsInput{
		Bucket: &s.bucket,
		CORSConfiguration: &types.CORSConfiguration{CORSRules: []types.CORSRule{{
			AllowedOrigins: r.AllowedOrigins,
			AllowedMethods: r.AllowedMethods,
			AllowedHeaders: r.AllowedHeaders,
			ExposeHeaders:  r.ExposeHeaders,
			MaxAgeSeconds:  aws.Int32(r.MaxAgeSeconds),
		}}},
	})
	if err != nil {
		return unavailable("put bucket cors", err)
	}
	return nil
}

// CORS returns the bucket's CORS rules; none configured is an empty list.
func (s *Store) CORS(ctx context.Context) ([]CORSRule, error) {
	out, err := s.client.GetBucketCors(ctx, &s3.GetBucketCorsInput{Bucket: &s.bucket})
	if err != nil {
		if errorCode(err) == "NoSuchCORSConfiguration" {
			return nil, nil
		}
		return nil, unavailable("get bucket cors", err)
	}
	rules := make([]CORSRule, len(out.CORSRules))
	for i, r := range out.CORSRules {
		rules[i] = CORSRule{
			AllowedOrigins: r.AllowedOrigins,
			AllowedMethods: r.AllowedMethods,
			AllowedHeaders: r.AllowedHeaders,
			ExposeHeaders:  r.ExposeHeaders,
			MaxAgeSeconds:  aws.ToInt32(r.MaxAgeSeconds),
		}
	}
	return rules, nil
}
