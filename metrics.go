package caddyupload

import (
	"errors"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddyupload/caddyupload/storage"
)

// Metrics are served by Caddy's `metrics` handler and admin endpoint. The
// collectors are built once per process, so counts survive config reloads;
// each config has a fresh registry, and every Provision registers them
// with it (a second route of the same config finds them registered).
// Label values are bounded: route names come from the config, kinds,
// reasons, codes and operations from fixed sets. Never a subject, key or
// id.

const (
	metricsNamespace = "caddy"
	metricsSubsystem = "upload"
)

// Rejection reasons, the `reason` label of caddy_upload_rejected_total.
const (
	rejectSize     = "size"     // stored size differs from the declared one
	rejectLimit    = "limit"    // stored size outside the route's limits
	rejectType     = "type"     // stored Content-Type differs from the declared one
	rejectChecksum = "checksum" // stored SHA-256 differs from the declared one
	rejectContent  = "content"  // the bytes contradict the type, or image limits
	rejectHeaders  = "headers"  // stored with response headers the module did not sign
	rejectReplaced = "replaced" // a confirmed object was replaced in storage
)

var rejectReasons = []string{rejectSize, rejectLimit, rejectType, rejectChecksum, rejectContent, rejectHeaders, rejectReplaced}

// Webhook delivery outcomes, for routeMetrics.webhookAttempt.
const (
	webhookDelivered = "delivered"
	webhookFailed    = "failed" // will be retried
	webhookParked    = "parked" // failed its last attempt
)

func counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: name, Help: help}, labels)
}

var uploadMetrics = struct {
	created, confirmed, confirmedBytes, rejected, aborted, expired, partsSigned *prometheus.CounterVec
	errors                                                                      *prometheus.CounterVec
	storageDuration                                                             *prometheus.HistogramVec
	storageErrors                                                               *prometheus.CounterVec
	ledgerCommit, ledgerBatch                                                   prometheus.Histogram
	ledgerFailed                                                                prometheus.GaugeFunc
	sweeps, swept, retired                                                      *prometheus.CounterVec
	webhookDeliveries, webhookFailures, webhookParked                           *prometheus.CounterVec
	webhookOutboxDue                                                            *prometheus.GaugeVec
	quotaRefused                                                                *prometheus.CounterVec
}{
	created:        counterVec("created_total", "Uploads created, by kind (PUT, POST, MULTIPART).", "route", "kind"),
	confirmed:      counterVec("confirmed_total", "Uploads confirmed.", "route"),
	confirmedBytes: counterVec("confirmed_bytes_total", "Bytes of the uploads confirmed.", "route"),
	rejected:       counterVec("rejected_total", "Uploads rejected at completion or download, by reason.", "route", "reason"),
	aborted:        counterVec("aborted_total", "Uploads aborted by their owner.", "route"),
	expired:        counterVec("expired_total", "Pending uploads expired by the sweeper.", "route"),
	partsSigned:    counterVec("parts_signed_total", "Multipart upload parts presigned.", "route"),
	errors:         counterVec("errors_total", "API errors answered, by their JSON error code.", "route", "code"),
	storageDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: "storage_duration_seconds",
		Help:    "Duration of object storage calls (presigning is local), by operation.",
		Buckets: prometheus.DefBuckets,
	}, []string{"route", "operation"}),
	storageErrors: counterVec("storage_errors_total", "Object storage calls that failed (a missing object is not a failure), by operation.", "route", "operation"),
	ledgerCommit: prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: "ledger_commit_duration_seconds",
		Help:    "Duration of bbolt ledger commits (each one fsync).",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14), // 0.5ms to 4s
	}),
	ledgerBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: "ledger_batch_size",
		Help:    "Writes per bbolt ledger commit (group commit).",
		Buckets: prometheus.ExponentialBuckets(1, 2, 11), // 1 to 1024
	}),
	ledgerFailed: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: "ledger_failed",
		Help: "1 when an open bbolt ledger stopped after a failed commit (restart Caddy once the disk is fixed), else 0.",
	}, anyLedgerFailed),
	sweeps:            counterVec("sweeps_total", "Sweeps of pending uploads past their deadline.", "route"),
	swept:             counterVec("swept_total", "Objects deleted by the sweeper.", "route"),
	retired:           counterVec("retired_total", "Terminal records deleted after their retention.", "route"),
	webhookDeliveries: counterVec("webhook_deliveries_total", "Webhook events delivered (accepted by the application).", "route"),
	webhookFailures:   counterVec("webhook_failures_total", "Failed webhook delivery attempts.", "route"),
	webhookParked:     counterVec("webhook_parked_total", "Webhook events parked after their last attempt.", "route"),
	webhookOutboxDue: prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: "webhook_outbox_due",
		Help: "Webhook events due for delivery at the dispatcher's last round (at most one batch, 100).",
	}, []string{"route"}),
	quotaRefused: counterVec("quota_refused_total", "Creates refused by a quota, by limit (pending, pending_bytes, uploads, bytes, rate).", "route", "limit"),
}

func allCollectors() []prometheus.Collector {
	m := &uploadMetrics
	return []prometheus.Collector{
		m.created, m.confirmed, m.confirmedBytes, m.rejected, m.aborted, m.expired, m.partsSigned,
		m.errors, m.storageDuration, m.storageErrors, m.ledgerCommit, m.ledgerBatch, m.ledgerFailed,
		m.sweeps, m.swept, m.retired, m.webhookDeliveries, m.webhookFailures, m.webhookParked, m.webhookOutboxDue,
		m.quotaRefused,
	}
}

// registerMetrics registers the collectors with reg, once per registry.
func registerMetrics(reg prometheus.Registerer) error {
	for _, c := range allCollectors() {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				continue
			}
			return err
		}
	}
	return nil
}

// routeMetrics are the collectors of one route, its label bound. A nil
// *routeMetrics counts nothing (a handler that was never provisioned).
type routeMetrics struct {
	route                                           string
	confirmed, confirmedBytes, aborted, expired     prometheus.Counter
	partsSigned, sweeps, swept, retired             prometheus.Counter
	webhookDeliveries, webhookFailures, webhookPark prometheus.Counter
	webhookDue                                      prometheus.Gauge
}

// newRouteMetrics registers the collectors with the config's registry and
// binds them to route. Every series a route has from the start is created
// here at 0, so that rate() sees its first event.
func newRouteMetrics(ctx caddy.Context, route string) (*routeMetrics, error) {
	if reg := ctx.GetMetricsRegistry(); reg != nil {
		if err := registerMetrics(reg); err != nil {
			return nil, err
		}
	}
	m := &uploadMetrics
	for _, kind := range []string{storage.KindPut, storage.KindPost, storage.KindMultipart} {
		m.created.WithLabelValues(route, kind)
	}
	for _, reason := range rejectReasons {
		m.rejected.WithLabelValues(route, reason)
	}
	return &routeMetrics{
		route:             route,
		confirmed:         m.confirmed.WithLabelValues(route),
		confirmedBytes:    m.confirmedBytes.WithLabelValues(route),
		aborted:           m.aborted.WithLabelValues(route),
		expired:           m.expired.WithLabelValues(route),
		partsSigned:       m.partsSigned.WithLabelValues(route),
		sweeps:            m.sweeps.WithLabelValues(route),
		swept:             m.swept.WithLabelValues(route),
		retired:           m.retired.WithLabelValues(route),
		webhookDeliveries: m.webhookDeliveries.WithLabelValues(route),
		webhookFailures:   m.webhookFailures.WithLabelValues(route),
		webhookPark:       m.webhookParked.WithLabelValues(route),
		webhookDue:        m.webhookOutboxDue.WithLabelValues(route),
	}, nil
}

func (m *routeMetrics) uploadCreated(kind string) {
	if m != nil {
		uploadMetrics.created.WithLabelValues(m.route, kind).Inc()
	}
}

func (m *routeMetrics) uploadConfirmed(size int64) {
	if m != nil {
		m.confirmed.Inc()
		m.confirmedBytes.Add(float64(max(size, 0)))
	}
}

// uploadRejected counts a rejection by its reason; rejections that name
// none come from the content check.
func (m *routeMetrics) uploadRejected(reason string) {
	if m == nil {
		return
	}
	if reason == "" {
		reason = rejectContent
	}
	uploadMetrics.rejected.WithLabelValues(m.route, reason).Inc()
}

func (m *routeMetrics) uploadAborted() {
	if m != nil {
		m.aborted.Inc()
	}
}

func (m *routeMetrics) partSigned() {
	if m != nil {
		m.partsSigned.Inc()
	}
}

// apiError counts an error answer by its code, a fixed set (errors.go).
func (m *routeMetrics) apiError(code string) {
	if m != nil {
		uploadMetrics.errors.WithLabelValues(m.route, code).Inc()
	}
}

// sweepRan counts one sweep; deferred at its start.
func (m *routeMetrics) sweepRan() {
	if m != nil {
		m.sweeps.Inc()
	}
}

func (m *routeMetrics) sweptExpired(n int) {
	if m != nil && n > 0 {
		m.expired.Add(float64(n))
	}
}

func (m *routeMetrics) retiredRecords(n int) {
	if m != nil && n > 0 {
		m.retired.Add(float64(n))
	}
}

func (m *routeMetrics) sweptObjects(n int) {
	if m != nil && n > 0 {
		m.swept.Add(float64(n))
	}
}

// webhookAttempt counts one delivery attempt by its outcome
// (webhookDelivered, webhookFailed or webhookParked).
func (m *routeMetrics) webhookAttempt(outcome string) {
	if m == nil {
		return
	}
	switch outcome {
	case webhookDelivered:
		m.webhookDeliveries.Inc()
	case webhookParked:
		m.webhookFailures.Inc()
		m.webhookPark.Inc()
	default:
		m.webhookFailures.Inc()
	}
}

// quotaLimits creates, at 0, the refusal series of the limits a route's
// quota sets.
func (m *routeMetrics) quotaLimits(limits ...string) {
	if m != nil {
		for _, l := range limits {
			uploadMetrics.quotaRefused.WithLabelValues(m.route, l)
		}
	}
}

// quotaRefused counts a create refused by limit (storage.Limit*).
func (m *routeMetrics) quotaRefused(limit string) {
	if m != nil {
		uploadMetrics.quotaRefused.WithLabelValues(m.route, limit).Inc()
	}
}

// webhookOutboxDue records how many events a dispatcher round found due.
func (m *routeMetrics) webhookOutboxDue(n int) {
	if m != nil {
		m.webhookDue.Set(float64(n))
	}
}

// observeLedgerCommit is the bolt ledger's OnCommit hook.
func observeLedgerCommit(d time.Duration, writes int, _ error) {
	uploadMetrics.ledgerCommit.Observe(d.Seconds())
	uploadMetrics.ledgerBatch.Observe(float64(writes))
}

// as names the metric reason of a rejection.
func (r *rejection) as(reason string) *rejection {
	r.metric = reason
	return r
}
