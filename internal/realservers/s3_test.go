package realservers

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func checkS3Server(t *testing.T, srv *S3Server) {
	a, b := srv.NewBucket(t), srv.NewBucket(t)
	if a == b {
		t.Fatalf("NewBucket returned %s twice", a)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := srv.Client().ListBuckets(ctx, &s3.ListBucketsInput{})
	if err != nil {
		t.Fatalf("ListBuckets: %v", err)
	}
	found := 0
	for _, bk := range out.Buckets {
		if *bk.Name == a || *bk.Name == b {
			found++
		}
	}
	if found != 2 {
		t.Fatalf("new buckets not listed")
	}
}

func TestStartVersityGW(t *testing.T) {
	RealOnly(t, "real S3 servers")
	t.Parallel()
	srv := StartVersityGW(t)
	checkS3Server(t, srv)
	srv.Process.Stop(5 * time.Second)
	if !srv.Process.Exited() {
		t.Fatal("versitygw still running after Stop")
	}
}

func TestStartSeaweedFS(t *testing.T) {
	RealOnly(t, "real S3 servers")
	t.Parallel()
	srv := StartSeaweedFS(t)
	checkS3Server(t, srv)
	srv.Process.Stop(10 * time.Second)
	if !srv.Process.Exited() {
		t.Fatal("seaweedfs still running after Stop")
	}
}

func TestSharedIsStartedOnce(t *testing.T) {
	RealOnly(t, "real S3 servers")
	a, b := SharedVersityGW(t), SharedVersityGW(t)
	if a != b {
		t.Fatal("SharedVersityGW started a second server")
	}
	checkS3Server(t, a)
	StopShared()
	if !a.Process.Exited() {
		t.Fatal("StopShared left the server running")
	}
}
