package proxy

import (
	"testing"
	"time"
)

func TestMetrics_CertificateExpiryOnlyForRoutesWithACertificate(t *testing.T) {
	m := NewMetrics()
	notAfter := time.Date(2027, 6, 1, 0, 0, 0, 0, time.UTC)
	m.watchCertificate("aem", func() time.Time { return notAfter })
	m.watchCertificate("stock", func() time.Time { return time.Time{} })

	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	samples := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "imsproxy_certificate_expiry_timestamp_seconds" {
			continue
		}
		for _, s := range f.GetMetric() {
			samples[s.GetLabel()[0].GetValue()] = s.GetGauge().GetValue()
		}
	}
	if len(samples) != 1 || samples["aem"] != float64(notAfter.Unix()) {
		t.Fatalf("certificate samples = %v, want only aem = %d", samples, notAfter.Unix())
	}
}
