package fakeadobe

import (
	"slices"
	"strings"
)

// A token is accepted only by the services its metascopes (JWT exchange)
// or scopes (client credentials) grant, as each Adobe service checks that a
// token was issued for it: a service-credentials token of AEM does not
// license on Stock, an OAuth token that asked only for openid does not read
// AEM.
//
// The JWT metascopes are those the Developer Console binds (Adobe's list of
// JWT metascopes, github.com/AdobeDocs/adobeio-auth JWT/Scopes.md, and the
// AEM as a Cloud Service service credentials). The OAuth scopes are those
// Adobe's guides name: openid for Stock (the scope of Stock's OAuth user
// authentication; the scope of a Stock server-to-server credential is not
// published, so the same is assumed), aem.* for AEM (the AEM OpenAPI
// tutorials' aem.folders, aem.assets.author, aem.fragments.management). The emulated AEM also stands in for Brand
// Portal, an AEM Assets service, so it accepts Brand Portal's metascope.
var (
	stockMetascopes = []string{MetascopeStock}
	aemMetascopes   = []string{MetascopeAEM, "ent_aem_cloud_sdk", MetascopeBrandPortal}
)

// grants reports whether a valid token may call svc (ServiceStock or
// ServiceAEM; other services do not check scopes).
func grants(info TokenInfo, svc Service) bool {
	scopes := strings.Split(info.Scope, ",")
	switch {
	case info.Grant == grantJWT && svc == ServiceStock:
		return anyOf(scopes, stockMetascopes)
	case info.Grant == grantJWT && svc == ServiceAEM:
		return anyOf(scopes, aemMetascopes)
	case info.Grant == grantClient && svc == ServiceStock:
		return slices.Contains(scopes, "openid")
	case info.Grant == grantClient && svc == ServiceAEM:
		return slices.ContainsFunc(scopes, func(s string) bool { return strings.HasPrefix(s, "aem.") })
	}
	return true
}

func anyOf(have, want []string) bool {
	return slices.ContainsFunc(have, func(s string) bool { return slices.Contains(want, s) })
}
