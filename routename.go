package caddyupload

import (
	"context"
	"fmt"
	"net/url"
	"sync"

	"github.com/caddyserver/caddy/v2"
)

// routeNames holds the route names of each config being loaded or
// running, keyed by the config's context: records belong to a route by
// name, so two routes of one config must never share one.
var routeNames = struct {
	sync.Mutex
	m map[context.Context]map[string]bool
}{m: make(map[context.Context]map[string]bool)}

// claimRouteName registers name for ctx's config, or says why it cannot.
func claimRouteName(ctx caddy.Context, name string) error {
	key := ctx.Context
	routeNames.Lock()
	defer routeNames.Unlock()
	names := routeNames.m[key]
	if names == nil {
		names = make(map[string]bool)
		routeNames.m[key] = names
		go func() {
			<-key.Done()
			routeNames.Lock()
			delete(routeNames.m, key)
			routeNames.Unlock()
		}()
	}
	if names[name] {
		return fmt.Errorf("two upload routes are named %q: give each upload block its own `name` (records belong to the route that created them)", name)
	}
	names[name] = true
	return nil
}

// normalizeOrigin checks an origin as an Origin header spells it and
// returns it lower-cased, without a default port.
func normalizeOrigin(o string) (string, error) {
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return "", fmt.Errorf("%q is not an origin (scheme://host[:port])", o)
	}
	return spellOrigin(u.Scheme, u.Host), nil
}
