package deploytest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/imsproxy/imsproxy/integration/fakeadobe"
)

// The monitoring files, relative to this module.
var (
	rulesFile     = filepath.Join(repoRoot, "deploy", "prometheus", "rules.yaml")
	dashboardFile = filepath.Join(repoRoot, "deploy", "grafana", "imsproxy.json")
)

// promql is Prometheus's own PromQL parser, with its default functions.
var promql = parser.NewParser(parser.Options{})

// loadRules parses the rules file as Prometheus loads it: unknown fields
// are errors, every expression and template must parse.
func loadRules(t *testing.T) *rulefmt.RuleGroups {
	t.Helper()
	groups, errs := rulefmt.ParseFile(rulesFile, false, model.UTF8Validation, promql, slog.New(slog.DiscardHandler))
	for _, err := range errs {
		t.Error(err)
	}
	if groups == nil {
		t.FailNow()
	}
	return groups
}

// TestRules_ParseWithPrometheusParsers: the rules load as Prometheus
// loads them, each alert has a severity and a summary, and the alerts the
// operator needs are all there.
func TestRules_ParseWithPrometheusParsers(t *testing.T) {
	t.Parallel()
	groups := loadRules(t)
	alerts := map[string]bool{}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			alerts[r.Alert] = true
			if !slices.Contains([]string{"critical", "warning", "info"}, r.Labels["severity"]) {
				t.Errorf("%s: severity %q, want critical, warning or info", r.Alert, r.Labels["severity"])
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: want a summary and a description", r.Alert)
			}
		}
	}
	for _, want := range []string{
		"ImsproxyTokenUnavailable", "ImsproxyTokenExpiringSoon", "ImsproxyTokenExchangeFailing",
		"ImsproxyCertificateExpiresSoon", "ImsproxyHighErrorRate", "ImsproxyLicenseBudgetNearlySpent",
		"ImsproxyRedisDown",
	} {
		if !alerts[want] {
			t.Errorf("no alert %s", want)
		}
	}
}

// scrape is a parsed /metrics answer of the running binary.
type scrape map[string]*dto.MetricFamily

// scrapeImsproxy starts the binary in front of the emulator with a stock
// route (OAuth, licensing allowed up to a daily limit, so the license
// budget is exported) and an aem route (JWT, so a certificate is
// watched), in fleet mode with a real redis-server (so the Redis metrics
// exist); it sends a search and
// a license so that the per-request series exist, and returns a scrape of
// /metrics.
func scrapeImsproxy(t *testing.T) scrape {
	t.Helper()
	adobe := startEmulator(t)
	creds := adobe.credentials(t)
	files, err := creds.WriteFiles(t.TempDir(), fakeadobe.Endpoints{IMS: adobe.URL, Stock: adobe.URL})
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"IMSPROXY_ROUTES":                    "stock,aem",
		"IMSPROXY_IMS_URL":                   adobe.URL,
		"IMSPROXY_STOCK_UPSTREAM":            adobe.URL,
		"IMSPROXY_STOCK_DOWNLOAD_UPSTREAM":   adobe.URL,
		"IMSPROXY_STOCK_CLIENT_ID":           creds.ClientID,
		"IMSPROXY_STOCK_CLIENT_SECRET":       creds.ClientSecret,
		"IMSPROXY_STOCK_SCOPES":              strings.Join(creds.Scopes, ","),
		"IMSPROXY_STOCK_ALLOW_LICENSE":       "true",
		"IMSPROXY_STOCK_LICENSE_DAILY_LIMIT": "5",
		"IMSPROXY_AUDIT_LOG":                 filepath.Join(t.TempDir(), "audit.jsonl"),
		"IMSPROXY_AEM_UPSTREAM":              adobe.URL,
		"IMSPROXY_AEM_CREDENTIALS_FILE":      files.ServiceCredentials,
	}
	// Fleet mode's metrics exist only in fleet mode: nothing here stands
	// in for them.
	env["IMSPROXY_REDIS_URL"] = startRedis(t)
	p := startProxy(t, env)
	p.waitReady(t)
	status, body := httpGet(t, p.routeURL("stock")+searchPath)
	var found struct {
		Files []struct {
			ID json.Number `json:"id"`
		} `json:"files"`
	}
	if err := json.Unmarshal([]byte(body), &found); status != http.StatusOK || err != nil || len(found.Files) == 0 {
		t.Fatalf("search: %d %s", status, body)
	}
	req, err := http.NewRequest(http.MethodGet, p.routeURL("stock")+"/Rest/Libraries/1/Content/License?license=Standard&content_id="+found.Files[0].ID.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Imsproxy-Allow-Editorial", "true") // whichever the first result is
	license, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	licenseBody, _ := io.ReadAll(license.Body)
	license.Body.Close()
	if license.StatusCode != http.StatusOK {
		t.Fatalf("license: %d %s, want 200", license.StatusCode, licenseBody)
	}
	resp, err := httpClient.Get(p.adminURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	exposition, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	tp := expfmt.NewTextParser(model.UTF8Validation)
	families, err := tp.TextToMetricFamilies(bytes.NewReader(exposition))
	if err != nil {
		t.Fatalf("the scrape does not parse: %v", err)
	}
	return families
}

// series returns the family a series name belongs to (a histogram's
// _bucket, _sum and _count belong to it) and the label names its samples
// carry.
func (s scrape) series(name string) (*dto.MetricFamily, []string) {
	fam, ok := s[name]
	extra := []string{}
	if !ok {
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			base, cut := strings.CutSuffix(name, suffix)
			if f, found := s[base]; cut && found && (f.GetType() == dto.MetricType_HISTOGRAM || f.GetType() == dto.MetricType_SUMMARY) {
				fam, ok = f, true
				if suffix == "_bucket" {
					extra = append(extra, "le")
				}
			}
		}
	}
	if !ok {
		return nil, nil
	}
	names := slices.Clone(extra)
	for _, m := range fam.Metric {
		for _, l := range m.Label {
			if !slices.Contains(names, l.GetName()) {
				names = append(names, l.GetName())
			}
		}
	}
	return fam, names
}

// scrapeLabels are added by Prometheus to every series it scrapes.
var scrapeLabels = []string{"instance", "job"}

// check parses a PromQL expression and returns a problem for every metric
// it selects that the scrape lacks, and for every label it matches on that
// the metric's samples do not carry.
func (s scrape) check(expr string) []string {
	node, err := promql.ParseExpr(expr)
	if err != nil {
		return []string{fmt.Sprintf("%q does not parse: %v", expr, err)}
	}
	var problems []string
	parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		for _, m := range vs.LabelMatchers {
			if m.Name == model.MetricNameLabel && m.Type == labels.MatchEqual {
				name = m.Value
			}
		}
		if name == "up" {
			return nil // made by Prometheus itself, for every target
		}
		fam, have := s.series(name)
		if fam == nil {
			problems = append(problems, fmt.Sprintf("metric %s is not in a scrape of imsproxy", name))
			return nil
		}
		for _, m := range vs.LabelMatchers {
			if m.Name != model.MetricNameLabel && !slices.Contains(have, m.Name) && !slices.Contains(scrapeLabels, m.Name) {
				problems = append(problems, fmt.Sprintf("metric %s has no label %s (it has %v)", name, m.Name, have))
			}
		}
		return nil
	})
	return problems
}

// grafanaVariables are replaced by sample values before a dashboard query
// is parsed, as Grafana replaces them before sending it.
var grafanaVariables = strings.NewReplacer(
	"$__rate_interval", "5m", "$__interval", "1m", "$__range", "6h",
	"$route", "stock", "$instance", "127.0.0.1:9090", "${datasource}", "prometheus")

// TestMonitoring_EveryMetricIsInAScrapeOfTheBinary: every metric the
// alert rules and the dashboard's queries and variables name is exported
// by the real imsproxy (with the labels they match on), and the check
// fails for one it does not export.
func TestMonitoring_EveryMetricIsInAScrapeOfTheBinary(t *testing.T) {
	t.Parallel()
	s := scrapeImsproxy(t)

	t.Run("rules", func(t *testing.T) {
		for _, g := range loadRules(t).Groups {
			for _, r := range g.Rules {
				t.Run(g.Name+"/"+r.Alert+r.Record, func(t *testing.T) {
					for _, p := range s.check(r.Expr) {
						t.Error(p)
					}
				})
			}
		}
	})

	t.Run("dashboard", func(t *testing.T) {
		d := loadDashboard(t)
		for _, p := range d.allPanels() {
			t.Run(p.Title, func(t *testing.T) {
				for _, target := range p.Targets {
					for _, problem := range s.check(grafanaVariables.Replace(target.Expr)) {
						t.Error(problem)
					}
				}
			})
		}
		labelValues := regexp.MustCompile(`^label_values\((\w+), *(\w+)\)$`)
		for _, v := range d.Templating.List {
			if v.Type != "query" {
				continue
			}
			m := labelValues.FindStringSubmatch(v.Definition)
			if m == nil {
				t.Errorf("variable %s: %q, want label_values(metric, label)", v.Name, v.Definition)
				continue
			}
			fam, have := s.series(m[1])
			if fam == nil || !slices.Contains(append(have, scrapeLabels...), m[2]) {
				t.Errorf("variable %s: %s is not a label of a metric imsproxy exports", v.Name, m[0])
			}
		}
	})

	t.Run("a metric the binary lacks fails the check", func(t *testing.T) {
		for _, expr := range []string{
			`imsproxy_token_seconds_left < 60`,                                  // no such metric
			`sum(rate(imsproxy_requests_total{status="5xx"}[5m]))`,              // no such label
			`histogram_quantile(0.9, rate(imsproxy_cache_hits_bucket[5m]))`,     // not a histogram
			`imsproxy_token_expiry_seconds > 0 and imsproxy_redis_up_gone == 0`, // one of two
		} {
			if len(s.check(expr)) == 0 {
				t.Errorf("%s passed the check", expr)
			}
		}
		if p := s.check(`imsproxy_token_expiry_seconds{route="stock"} > 0`); len(p) > 0 {
			t.Errorf("a metric the binary exports failed the check: %v", p)
		}
	})
}

// dashboard is the part of a Grafana dashboard model the tests read.
type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []templateVar `json:"list"`
	} `json:"templating"`
}

// templateVar is a dashboard variable ($datasource, $route, ...).
type templateVar struct {
	Name       string `json:"name"`
	Type       string `json:"type"`
	Definition string `json:"definition"`
}

type panel struct {
	ID         int     `json:"id"`
	Type       string  `json:"type"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"` // a collapsed row's
	GridPos    *struct{ H, W, X, Y int }
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		Expr   string `json:"expr"`
		RefID  string `json:"refId"`
		Legend string `json:"legendFormat"`
	} `json:"targets"`
}

func loadDashboard(t *testing.T) *dashboard {
	t.Helper()
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return &d
}

// allPanels returns every panel, those inside rows included, rows left out.
func (d *dashboard) allPanels() []panel {
	var out []panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			out = append(out, p)
		}
	}
	walk(d.Panels)
	return out
}

// TestDashboard_IsWellFormed: a uid to import it by, panels with unique
// ids, a place on the grid and queries, all on the data source variable,
// and a variable for that data source.
func TestDashboard_IsWellFormed(t *testing.T) {
	t.Parallel()
	d := loadDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Error("the dashboard needs a uid and a title")
	}
	hasDatasource := slices.ContainsFunc(d.Templating.List, func(v templateVar) bool {
		return v.Type == "datasource" && v.Name == "datasource"
	})
	if !hasDatasource {
		t.Error("no datasource variable: the dashboard would be tied to one Prometheus's uid")
	}
	ids := map[int]string{}
	for _, p := range d.allPanels() {
		if other, dup := ids[p.ID]; dup || p.ID == 0 {
			t.Errorf("panel %q: id %d (also %q)", p.Title, p.ID, other)
		}
		ids[p.ID] = p.Title
		if p.GridPos == nil || p.GridPos.W == 0 || p.GridPos.H == 0 {
			t.Errorf("panel %q has no place on the grid", p.Title)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: data source %+v, want ${datasource}", p.Title, p.Datasource)
		}
		refs := map[string]bool{}
		for _, target := range p.Targets {
			if target.RefID == "" || refs[target.RefID] {
				t.Errorf("panel %q: refId %q missing or repeated", p.Title, target.RefID)
			}
			refs[target.RefID] = true
		}
	}
}
