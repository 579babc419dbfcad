package proxy

import (
	"testing"

	"github.com/imsproxy/imsproxy/config"
	"github.com/imsproxy/imsproxy/internal/testutil"
	"github.com/imsproxy/imsproxy/proxy/metrics"
)

func TestRoute_LicenseBudgetGaugesFollowTheDailyLimit(t *testing.T) {
	m := metrics.New()
	stock := &fakeStock{editorial: map[string]bool{"1": false}}
	lr := newLicensingRoute(t, stock, RouteOptions{Metrics: m}, func(rc *config.Route) { rc.LicenseDailyLimit = 3 })
	gauges := func() (limit, remaining float64) {
		return testutil.Samples(t, m.Handler(), "imsproxy_license_daily_limit")["stock"],
			testutil.Samples(t, m.Handler(), "imsproxy_license_daily_remaining")["stock"]
	}
	if limit, remaining := gauges(); limit != 3 || remaining != 3 {
		t.Fatalf("before any license: limit %v, remaining %v", limit, remaining)
	}
	resp := lr.get(t, "/Rest/Libraries/1/Content/License?license=Standard&content_id=1")
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("license: %d", resp.StatusCode)
	}
	if limit, remaining := gauges(); limit != 3 || remaining != 2 {
		t.Errorf("after one license: limit %v, remaining %v", limit, remaining)
	}
}
