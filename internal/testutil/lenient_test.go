package testutil

import "testing"

func TestReadLenientLicense(t *testing.T) {
	const lic = "/Rest/Libraries/1/Content/License"
	tests := []struct {
		target, contentType, body string
		want                      LenientLicense
		ok                        bool
	}{
		{lic + "?content_id=5&license=Standard", "", "", LenientLicense{"5", "Standard"}, true},
		{lic + "?content_id=1&content.id=2", "", "", LenientLicense{"2", ""}, true},
		{lic + "?content_id=1&content+id=2", "", "", LenientLicense{"2", ""}, true},
		{lic + "?Content_ID=3", "", "", LenientLicense{"3", ""}, true},
		{lic + "?content_id[]=4", "", "", LenientLicense{"4", ""}, true},
		{lic + "?content_id=1;content_id=6", "", "", LenientLicense{"6", ""}, true},
		{lic + "?content_id=0012abc", "", "", LenientLicense{"12", ""}, true},
		{lic + "?content_id=1", "application/x-www-form-urlencoded;;", "content_id=7", LenientLicense{"7", ""}, true},
		{lic + "?content_id=1", "application/json", "content_id=7", LenientLicense{"1", ""}, true},
		{"//stock.adobe.io" + lic + "?content_id=8", "", "", LenientLicense{"8", ""}, true},
		{"/Rest;x=1/Libraries/1/Content/License?content_id=9", "", "", LenientLicense{"9", ""}, true},
		{"/Rest/Libraries/1/Content/Licen%C5%BFe?content_id=10", "", "", LenientLicense{"10", ""}, true},
		{"/Rest/Libraries/1/Content/Licen%25C5%25BFe?content_id=11", "", "", LenientLicense{"11", ""}, true},
		{`\Rest\Libraries\1\Content\License?content_id=12`, "", "", LenientLicense{"12", ""}, true},
		{lic + "?content_id=abc", "", "", LenientLicense{}, false},
		{lic + "?id=5", "", "", LenientLicense{}, false},
		{"/Rest/Media/1/Search/Files?content_id=5", "", "", LenientLicense{}, false},
	}
	for _, tt := range tests {
		got, ok := ReadLenientLicense(tt.target, tt.contentType, []byte(tt.body))
		if ok != tt.ok || ok && got != tt.want {
			t.Errorf("%s (%s %q): %+v, %v; want %+v, %v", tt.target, tt.contentType, tt.body, got, ok, tt.want, tt.ok)
		}
	}
}
