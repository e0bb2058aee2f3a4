package handlers

import (
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/orchable/orchable/model"
	"github.com/orchable/orchable/pipeline"
	"github.com/orchable/orchable/supabase"
)

// Metrics are the service's Prometheus metrics (SPEC §11), in a private
// registry served by GET /metrics. It implements pipeline.Observer; the key
// pool feeds KeyOutcome. All methods are safe for concurrent use.
//
// Label cardinality: no label takes a raw user-controlled value. "stage" (a
// template's stage_key, written by users) and "model" (a stage's model id)
// are bounded: the first few distinct, well-formed values seen get a label
// of their own (METRICS_STAGE_LABELS, default 50 stages; 32 models), every
// later or malformed one counts as "other". Per-tenant detail belongs in
// the logs. Outcome, kind and reason labels are small fixed sets.
type Metrics struct {
	registry *prometheus.Registry

	tasks         *prometheus.CounterVec
	stageLatency  *prometheus.HistogramVec
	modelLatency  *prometheus.HistogramVec
	tokens        *prometheus.CounterVec
	regenerations prometheus.Counter
	keyOutcomes   *prometheus.CounterVec
	webhookAck    prometheus.Histogram
	webhooks      *prometheus.CounterVec
	usersWaiting  prometheus.Gauge
	running       prometheus.Gauge
	claimFailures *prometheus.CounterVec
	answers       *prometheus.CounterVec
	fallbacks     *prometheus.CounterVec

	models *boundedLabel
	stages *boundedLabel
}

// boundedLabel hands out at most max distinct label values; values past
// that, and values that are not short plain identifiers, become "other".
type boundedLabel struct {
	mu   sync.Mutex
	max  int
	seen map[string]bool
}

func newBoundedLabel(n int) *boundedLabel {
	return &boundedLabel{max: n, seen: map[string]bool{}}
}

// maxLabelLen bounds one label value.
const maxLabelLen = 64

func (b *boundedLabel) value(v string) string {
	if v == "" {
		return "none"
	}
	if len(v) > maxLabelLen || strings.IndexFunc(v, func(r rune) bool {
		return (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') && r != '_' && r != '-' && r != '.' && r != ':' && r != '/'
	}) >= 0 {
		return "other"
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.seen[v] {
		return v
	}
	if len(b.seen) >= b.max || v == "other" || v == "none" {
		return "other"
	}
	b.seen[v] = true
	return v
}

// DefaultStageLabels is how many distinct stage keys get a label of their
// own by default (METRICS_STAGE_LABELS).
const DefaultStageLabels = 50

// maxModelLabels bounds the model label: model ids come from stage settings
// (configuration), and past this many distinct ids the rest count as "other".
const maxModelLabels = 32

var _ pipeline.Observer = (*Metrics)(nil)

// NewMetrics returns Metrics registered in a new private registry, together
// with the Go runtime and process collectors, with DefaultStageLabels.
func NewMetrics() *Metrics { return NewMetricsWithStageLabels(DefaultStageLabels) }

// NewMetricsWithStageLabels is NewMetrics with at most stageLabels distinct
// stage label values (then "other"); 0 counts every stage as "other".
func NewMetricsWithStageLabels(stageLabels int) *Metrics {
	const ns = "orchable"
	m := &Metrics{
		stages:   newBoundedLabel(max(stageLabels, 0)),
		models:   newBoundedLabel(maxModelLabels),
		registry: prometheus.NewRegistry(),
		tasks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "tasks_total",
			Help: "Task runs by outcome (completed, generated, failed, rescheduled, released, lost) and stage.",
		}, []string{"outcome", "stage"}),
		stageLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Name: "stage_duration_seconds",
			Help:    "Time from claim to result written, per stage.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}, []string{"stage"}),
		modelLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Name: "model_duration_seconds",
			Help:    "Time spent in the model per task run (regenerations included), per stage.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}, []string{"stage"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "model_tokens_total",
			Help: "Model tokens by kind (prompt, candidates, thoughts).",
		}, []string{"kind"}),
		regenerations: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "model_regenerations_total",
			Help: "Model calls repeated because the output was invalid.",
		}),
		keyOutcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "key_outcomes_total",
			Help: "Model calls by API key outcome (success, failure, rate_limited, key_blocked, invalid) and error kind.",
		}, []string{"result", "kind"}),
		webhookAck: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Name: "webhook_ack_duration_seconds",
			Help:    "Time to acknowledge a Supabase webhook, authentication included.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .1},
		}),
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "webhooks_total",
			Help: "Supabase webhooks by outcome (queued, ignored, or the error code).",
		}, []string{"outcome"}),
		usersWaiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "dispatcher_users_waiting",
			Help: "Users with pending work hints in the dispatcher (its queue depth).",
		}),
		running: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "dispatcher_running",
			Help: "Tasks the dispatcher is running: claimed, and not yet written (a task whose result is being written has given back its slot, so this may exceed WORKER_CONCURRENCY, up to twice it).",
		}),
		claimFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "claim_failures_total",
			Help: "Failed claim calls by reason (unavailable, other).",
		}, []string{"reason"}),
		answers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "model_answers_total",
			Help: "Task runs answered, by the model id of the stage's chain that answered (at most 32 ids, then \"other\").",
		}, []string{"model"}),
		fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "model_fallbacks_total",
			Help: "Model calls moved to the next model of a stage's fallback chain, by the model that failed.",
		}, []string{"model"}),
	}
	m.registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.tasks, m.stageLatency, m.modelLatency, m.tokens, m.regenerations, m.keyOutcomes,
		m.webhookAck, m.webhooks, m.usersWaiting, m.running, m.claimFailures,
		m.answers, m.fallbacks,
	)
	return m
}

// Registry returns the private registry, for tests and extra collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.registry }

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}

// TaskFinished implements pipeline.Observer.
func (m *Metrics) TaskFinished(res pipeline.Result, stage string, elapsed time.Duration) {
	stage = m.stages.value(stage)
	m.tasks.WithLabelValues(string(res.Outcome), stage).Inc()
	m.stageLatency.WithLabelValues(stage).Observe(elapsed.Seconds())
	if res.ModelLatency > 0 {
		m.modelLatency.WithLabelValues(stage).Observe(res.ModelLatency.Seconds())
	}
	m.addTokens("prompt", res.Usage.PromptTokens)
	m.addTokens("candidates", res.Usage.CandidatesTokens)
	m.addTokens("thoughts", res.Usage.ThoughtsTokens)
	if res.Regenerations > 0 {
		m.regenerations.Add(float64(res.Regenerations))
	}
	if res.Model != "" {
		m.answers.WithLabelValues(m.modelLabel(res.Model)).Inc()
	}
	for _, f := range res.FallbackFrom {
		m.fallbacks.WithLabelValues(m.modelLabel(f)).Inc()
	}
}

// modelLabel is id while fewer than maxModelLabels ids have been seen, and
// "other" for new ids after that.
func (m *Metrics) modelLabel(id string) string { return m.models.value(id) }

func (m *Metrics) addTokens(kind string, n int) {
	if n > 0 {
		m.tokens.WithLabelValues(kind).Add(float64(n))
	}
}

// QueueDepth implements pipeline.Observer.
func (m *Metrics) QueueDepth(users, running int) {
	m.usersWaiting.Set(float64(users))
	m.running.Set(float64(running))
}

// ClaimFailed implements pipeline.Observer.
func (m *Metrics) ClaimFailed(err error) {
	reason := "other"
	if errors.Is(err, supabase.ErrUnavailable) {
		reason = "unavailable"
	}
	m.claimFailures.WithLabelValues(reason).Inc()
}

// KeyOutcome counts one model call's key outcome (key health). Feed it from
// a model.KeyStore decorator around RecordOutcome in main.
func (m *Metrics) KeyOutcome(o model.Outcome) {
	kind := o.ErrorCode
	if kind == "" {
		kind = "none"
	}
	m.keyOutcomes.WithLabelValues(o.Result, kind).Inc()
}

// webhookHandled records one webhook: how long the acknowledgement took and
// its outcome.
func (m *Metrics) webhookHandled(outcome string, elapsed time.Duration) {
	m.webhookAck.Observe(elapsed.Seconds())
	m.webhooks.WithLabelValues(outcome).Inc()
}
