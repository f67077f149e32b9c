// Command naiveapp is the upload path the module replaces: the browser
// posts a multipart form through the proxy to the application, which
// streams the file on to object storage with PutObject. It is as kind to
// the naive path as it can be: nothing is buffered in memory or on disk.
//
// The form must carry a "size" field before the "file" part (PutObject
// needs the length up front).
//
//	S3_ENDPOINT=http://127.0.0.1:9000 S3_BUCKET=b S3_ACCESS_KEY_ID=.. S3_SECRET_ACCESS_KEY=.. naiveapp -listen 127.0.0.1:9200
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:9200", "address to listen on")
	flag.Parse()
	client := s3.New(s3.Options{
		Region:                     "us-east-1",
		BaseEndpoint:               aws.String(os.Getenv("S3_ENDPOINT")),
		UsePathStyle:               true,
		Credentials:                credentials.NewStaticCredentialsProvider(os.Getenv("S3_ACCESS_KEY_ID"), os.Getenv("S3_SECRET_ACCESS_KEY"), ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
	bucket := os.Getenv("S3_BUCKET")
	http.HandleFunc("POST /naive/upload", func(w http.ResponseWriter, r *http.Request) {
		key, err := store(r.Context(), client, bucket, r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, "{\"key\":%q}\n", key)
	})
	log.Fatal(http.ListenAndServe(*listen, nil))
}

func store(ctx context.Context, client *s3.Client, bucket string, r *http.Request) (string, error) {
	mr, err := r.MultipartReader()
	if err != nil {
		return "", err
	}
	size := int64(-1)
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return "", errors.New("no file part")
		}
		if err != nil {
			return "", err
		}
		switch part.FormName() {
		case "size":
			b, _ := io.ReadAll(io.LimitReader(part, 32))
			if size, err = strconv.ParseInt(string(b), 10, 64); err != nil {
				return "", errors.New("bad size")
			}
		case "file":
			if size < 0 {
				return "", errors.New("the size field must come before the file")
			}
			var id [16]byte
			_, _ = rand.Read(id[:])
			key := "naive/" + hex.EncodeToString(id[:])
			typ := part.Header.Get("Content-Type")
			if typ == "" {
				typ = "application/octet-stream"
			}
			_, err := client.PutObject(ctx, &s3.PutObjectInput{
				Bucket: &bucket, Key: &key, Body: part, ContentLength: aws.Int64(size), ContentType: &typ,
			}, s3.WithAPIOptions(
				// Over plain HTTP the SDK would hash the body first, which
				// needs a seekable body: stream it unsigned instead.
				v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware,
			))
			return key, err
		}
	}
}
