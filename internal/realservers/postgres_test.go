package realservers

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestPostgresKillRestart(t *testing.T) {
	srv := StartPostgres(t)
	dsn := srv.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	query := func() (string, error) {
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return "", err
		}
		defer c.Close(ctx)
		var s string
		err = c.QueryRow(ctx, "SELECT current_setting('fsync') || ' ' || current_user").Scan(&s)
		return s, err
	}
	if s, err := query(); err != nil || s != "on postgres" {
		t.Fatalf("query: %q, %v", s, err)
	}
	srv.Kill(t)
	if _, err := query(); err == nil {
		t.Fatal("query succeeded after kill -9 of the postmaster")
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	if s, err := query(); err != nil || s != "on postgres" {
		t.Fatalf("query after restart: %q, %v", s, err)
	}
}
