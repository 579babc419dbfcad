package fakeadobe

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
)

// writeJSON writes v as JSON. Keys of maps come out sorted, so the same
// value always gives the same bytes; HTML characters are not escaped
// (thumbnail_html_tag reads as Adobe sends it).
func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// imsError is IMS's error shape, as Adobe Stock's Access API Reference
// documents it and @adobe/jwt-auth reads it.
type imsError struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

func writeIMSError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, imsError{Error: code, Description: desc})
}

// gatewayError is the shape of Adobe's API gateway in front of Stock (the
// Stock API's headers page shows
// {"error_code":"403003","message":"Api Key is invalid"}); the codes are those of Adobe's open-source gateway validators
// (api-gateway-request-validation, validatorsHandlerErrorDecorator.lua).
type gatewayError struct {
	Code    string `json:"error_code"`
	Message string `json:"message"`
}

// The gateway's errors.
var (
	errAPIKeyMissing = gatewayError{"403000", "Api Key is required"}
	errAPIKeyInvalid = gatewayError{"403003", "Api Key is invalid"}
	errTokenMissing  = gatewayError{"403010", "Oauth token is missing."}
	errTokenInvalid  = gatewayError{"401013", "Oauth token is not valid"}
)

func writeGatewayError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, gatewayError{Code: code, Message: msg})
}

func writeGateway(w http.ResponseWriter, e gatewayError) {
	status := http.StatusForbidden
	if e.Code[:3] == "401" {
		status = http.StatusUnauthorized
	}
	writeJSON(w, status, e)
}

// stockError is the Stock application's own error shape:
// {"error":"...","code":"020","case":"<id>"} (the Stock licensing
// reference; the Files API reference uses codes 600-606 in the same shape).
type stockError struct {
	Error string `json:"error"`
	Code  string `json:"code"`
	Case  string `json:"case"`
}

// Stock's error categories (Search and Licensing references).
const (
	codeInvalidToken  = "010"
	codeInvalidParams = "020"
	codeInvalidMethod = "031"
	codeInvalidData   = "100"
)

func writeStockError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, stockError{Error: msg, Code: code, Case: caseID()})
}

// caseID is the support reference Stock attaches to an error.
func caseID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
