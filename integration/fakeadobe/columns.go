package fakeadobe

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// defaultColumns are the fields Search/Files returns without
// result_columns[] (Search reference, fields marked *).
var defaultColumns = []string{
	"nb_results", "id", "title", "creator_name", "creator_id", "width", "height",
	"thumbnail_url", "thumbnail_html_tag", "thumbnail_width", "thumbnail_height",
	"media_type_id", "category", "category_hierarchy", "vector_type", "content_type",
	"premium_level_id",
}

// knownColumns are the values result_columns[] accepts: the documented list,
// plus is_editorial (added to Adobe's Stock Java SDK in 2018,
// adobe/stock-api-libjava PR #3) and
// creation_date (the Files reference's own example).
var knownColumns = func() map[string]bool {
	m := map[string]bool{}
	for _, c := range strings.Fields(`id nb_results title creator_name creator_id country_name
		width height thumbnail_url thumbnail_html_tag thumbnail_width thumbnail_height
		media_type_id category category_hierarchy keywords has_releases comp_url comp_width
		comp_height is_licensed vector_type content_type framerate duration comps details_url
		template_type_id template_category_ids marketing_text description size_bytes
		premium_level_id is_premium is_loop is_transparent licenses video_preview_url
		video_preview_width video_preview_height video_preview_content_length
		video_preview_content_type video_small_preview_url video_small_preview_width
		video_small_preview_height video_small_preview_content_length
		video_small_preview_content_type is_gentech icon_option is_editorial creation_date`) {
		m[c] = true
	}
	for _, size := range []string{"110", "160", "220", "240", "500", "1000"} {
		for _, f := range []string{"url", "width", "height"} {
			m["thumbnail_"+size+"_"+f] = true
		}
	}
	return m
}()

// renderer turns assets into Stock's JSON objects for one request.
type renderer struct {
	cdn       string // base of thumbnail URLs
	download  string // base of comp URLs
	apiKey    string
	locale    string
	thumbSize int
	// licensed maps asset ID → licence held by the caller's organisation;
	// nil when the request carried no valid token (is_licensed is then "").
	licensed map[int]string
}

// render returns the asset's requested columns; nb_results is the
// caller's business.
func (rd *renderer) render(a *asset, cols []string) map[string]any {
	m := make(map[string]any, len(cols))
	for _, c := range cols {
		if c != "nb_results" {
			m[c] = rd.column(a, c)
		}
	}
	return m
}

func (rd *renderer) thumbURL(a *asset, size int) string { return rd.cdn + a.thumbnailPath(size) }

// compN is the {n} of an asset's watermarked (comp) download URL.
const compN = 1

func (rd *renderer) compURL(a *asset) string {
	return fmt.Sprintf("%s/Rest/Libraries/Watermarked/Download/%d/%d", rd.download, a.ID, compN)
}

func (rd *renderer) column(a *asset, col string) any {
	if strings.HasPrefix(col, "thumbnail_") && strings.Count(col, "_") == 2 {
		parts := strings.Split(col, "_")
		size, _ := strconv.Atoi(parts[1])
		w, h := a.thumbnailSize(size)
		switch parts[2] {
		case "url":
			return rd.thumbURL(a, size)
		case "width":
			return w
		case "height":
			return h
		}
	}
	isVideo := a.MediaType == mediaVideo
	switch col {
	case "id":
		return a.ID
	case "title", "description":
		return a.Title
	case "creator_name":
		return a.CreatorName
	case "creator_id":
		return a.CreatorID
	case "country_name":
		return a.Country
	case "width":
		return a.Width
	case "height":
		return a.Height
	case "thumbnail_url":
		return rd.thumbURL(a, rd.thumbSize)
	case "thumbnail_width":
		w, _ := a.thumbnailSize(rd.thumbSize)
		return w
	case "thumbnail_height":
		_, h := a.thumbnailSize(rd.thumbSize)
		return h
	case "thumbnail_html_tag":
		return fmt.Sprintf("<img src='%s' alt='%s' title='%s: %s' />", rd.thumbURL(a, rd.thumbSize),
			htmlQuote(a.Title), mediaLabel(a.MediaType), htmlQuote(a.Title))
	case "media_type_id":
		return a.MediaType
	case "category":
		return map[string]any{"id": a.Category.ID, "name": a.Category.localName(rd.locale)}
	case "category_hierarchy":
		var out []map[string]any
		for c := a.Category; c != nil; c = categoryByID[c.Parent] {
			out = append([]map[string]any{{"id": c.ID, "name": c.localName(rd.locale), "link": c.link()}}, out...)
		}
		return out
	case "keywords":
		out := make([]map[string]string, len(a.Keywords))
		for i, k := range a.Keywords {
			out[i] = map[string]string{"name": k}
		}
		return out
	case "has_releases":
		return a.HasReleases
	case "comp_url":
		return rd.compURL(a)
	case "comp_width", "comp_height":
		w, h := a.thumbnailSize(1000)
		if col == "comp_width" {
			return w
		}
		return h
	case "comps":
		w, h := a.thumbnailSize(1000)
		comp := map[string]any{"url": rd.compURL(a), "width": w, "height": h}
		if isVideo {
			out := map[string]any{"Video_HD": comp}
			if a.Has4K {
				out["Video_4K"] = comp
			}
			return out
		}
		return map[string]any{"Standard": comp}
	case "is_licensed":
		return rd.licensed[a.ID] // "" when not licensed or anonymous
	case "vector_type":
		if a.VectorType == "" {
			return nil
		}
		return a.VectorType
	case "content_type":
		return a.ContentType
	case "framerate":
		if !isVideo {
			return nil
		}
		return a.Framerate
	case "duration":
		if !isVideo {
			return nil
		}
		return a.Duration
	case "details_url":
		sum := sha256.Sum256([]byte(rd.apiKey))
		return fmt.Sprintf("https://stock.adobe.com/%d?as_channel=affiliate&as_source=api&as_content=%s",
			a.ID, hex.EncodeToString(sum[:16]))
	case "template_type_id":
		if a.MediaType != mediaTemplate {
			return nil
		}
		return 1
	case "template_category_ids":
		return []int{}
	case "marketing_text", "icon_option":
		return nil
	case "size_bytes":
		return a.SizeBytes
	case "premium_level_id":
		return a.Premium
	case "is_premium":
		return a.Premium >= 2
	case "is_loop":
		return a.IsLoop
	case "is_transparent":
		return a.Transparent
	case "is_gentech":
		return a.Gentech
	case "is_editorial":
		return a.Editorial
	case "creation_date":
		return a.Created.Format("2006-01-02 15:04:05")
	case "licenses":
		return a.licences()
	}
	if strings.HasPrefix(col, "video_") {
		return rd.videoPreview(a, col)
	}
	return nil
}

func (rd *renderer) videoPreview(a *asset, col string) any {
	if a.MediaType != mediaVideo {
		return nil
	}
	small := strings.HasPrefix(col, "video_small_preview_")
	w, h := 1280, 720
	if small {
		w, h = 640, 360
	}
	switch col[strings.LastIndex(col, "_preview_")+len("_preview_"):] {
	case "url":
		return fmt.Sprintf("%s/videos/%d_%dp.mp4", rd.cdn, a.ID, h)
	case "width":
		return w
	case "height":
		return h
	case "content_length":
		return a.Duration * h / 4
	case "content_type":
		return "video/mp4"
	}
	return nil
}

func mediaLabel(mt int) string {
	switch mt {
	case mediaIllustration:
		return "Illustration"
	case mediaVector:
		return "Vector"
	case mediaVideo:
		return "Video"
	case media3D:
		return "3D"
	case mediaTemplate:
		return "Template"
	}
	return "Photo"
}

func htmlQuote(s string) string {
	return strings.NewReplacer("'", "&#39;", "<", "&lt;", ">", "&gt;", "&", "&amp;").Replace(s)
}

// columnsOf reads result_columns[] (also sent as result_columns[0]=...),
// or returns def when there are none (explicit is then false); bad names
// come back in unknown.
func columnsOf(q map[string][]string, def []string) (cols, unknown []string, explicit bool) {
	for k, vs := range q {
		if k != "result_columns[]" && !(strings.HasPrefix(k, "result_columns[") && strings.HasSuffix(k, "]")) {
			continue
		}
		for _, v := range vs {
			if !knownColumns[v] {
				unknown = append(unknown, v)
				continue
			}
			if !slices.Contains(cols, v) {
				cols = append(cols, v)
			}
		}
	}
	if len(cols) == 0 && len(unknown) == 0 {
		return def, nil, false
	}
	slices.Sort(unknown)
	return cols, unknown, true
}
