package caddyupload

import (
	"mime"
	"strings"
)

// extensionsByType lists the extensions a file of each common type may
// carry, the canonical one first. It is built in rather than read from the
// system's mime.types so that the same Caddyfile accepts the same files on
// every machine.
var extensionsByType = map[string][]string{
	"image/jpeg":                  {".jpg", ".jpeg", ".jpe", ".jfif"},
	"image/png":                   {".png"},
	"image/gif":                   {".gif"},
	"image/webp":                  {".webp"},
	"image/avif":                  {".avif"},
	"image/heic":                  {".heic"},
	"image/heif":                  {".heif"},
	"image/svg+xml":               {".svg"},
	"image/tiff":                  {".tif", ".tiff"},
	"image/bmp":                   {".bmp"},
	"image/x-icon":                {".ico"},
	"application/pdf":             {".pdf"},
	"application/json":            {".json"},
	"application/zip":             {".zip"},
	"application/gzip":            {".gz", ".tgz"},
	"application/x-tar":           {".tar"},
	"application/x-7z-compressed": {".7z"},
	"application/octet-stream":    {".bin"},
	"application/msword":          {".doc"},
	"application/vnd.openxmlformats-officedocument.wordprocessingml.document":   {".docx"},
	"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet":         {".xlsx"},
	"application/vnd.openxmlformats-officedocument.presentationml.presentation": {".pptx"},
	"application/vnd.ms-excel":                {".xls"},
	"application/vnd.oasis.opendocument.text": {".odt"},
	"text/plain":                   {".txt", ".text", ".log"},
	"text/csv":                     {".csv"},
	"text/markdown":                {".md", ".markdown"},
	"text/html":                    {".html", ".htm"},
	"text/css":                     {".css"},
	"text/javascript":              {".js", ".mjs"},
	"application/xml":              {".xml"},
	"text/xml":                     {".xml"},
	"video/mp4":                    {".mp4", ".m4v"},
	"video/quicktime":              {".mov"},
	"video/webm":                   {".webm"},
	"video/x-matroska":             {".mkv"},
	"video/mpeg":                   {".mpeg", ".mpg"},
	"audio/mpeg":                   {".mp3"},
	"audio/mp4":                    {".m4a"},
	"audio/wav":                    {".wav"},
	"audio/x-wav":                  {".wav"},
	"audio/ogg":                    {".ogg", ".oga"},
	"audio/flac":                   {".flac"},
	"audio/webm":                   {".weba"},
	"font/woff2":                   {".woff2"},
	"font/woff":                    {".woff"},
	"application/wasm":             {".wasm"},
	"application/epub+zip":         {".epub"},
	"application/vnd.rar":          {".rar"},
	"application/x-rar-compressed": {".rar"},
}

// typesByExtension is the inverse of extensionsByType.
var typesByExtension = func() map[string][]string {
	m := make(map[string][]string)
	for t, exts := range extensionsByType {
		for _, e := range exts {
			m[e] = append(m[e], t)
		}
	}
	return m
}()

// parseMediaType validates a client-declared type and returns it bare and
// lowercased ("image/png"); parameters are dropped, since the signed
// Content-Type header must be exactly what the client sends.
func parseMediaType(s string) (string, bool) {
	if s == "" || len(s) > 255 {
		return "", false
	}
	mt, _, err := mime.ParseMediaType(s)
	if err != nil {
		return "", false
	}
	slash := strings.IndexByte(mt, '/')
	if slash <= 0 || slash == len(mt)-1 || strings.Contains(mt, "*") {
		return "", false
	}
	return mt, true
}

// fileExtension returns filename's extension, lowercased, when it is a
// plausible one (a dot, then 1–16 ASCII letters or digits); "" otherwise.
func fileExtension(filename string) string {
	dot := strings.LastIndexByte(filename, '.')
	if dot < 0 || dot == len(filename)-1 {
		return ""
	}
	ext := strings.ToLower(filename[dot:])
	if len(ext) > 17 {
		return ""
	}
	for _, c := range ext[1:] {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return ""
		}
	}
	return ext
}

// keyExtension chooses the extension a key gets for a file of mediaType
// named with ext: the file's own extension when it belongs to the type,
// else the type's canonical one, else none. ok is false when the file's
// extension is known to belong to other types only — a contradiction.
func keyExtension(mediaType, ext string) (keyExt string, ok bool) {
	exts := extensionsByType[mediaType]
	if exts == nil {
		if sys, _ := mime.ExtensionsByType(mediaType); len(sys) > 0 {
			exts = sys
		}
	}
	for _, e := range exts {
		if e == ext {
			return ext, true
		}
	}
	if ext != "" {
		if others := typesByExtension[ext]; len(others) > 0 {
			return "", false
		}
	}
	if len(exts) > 0 {
		return exts[0], true
	}
	return "", true
}

// typeMatcher decides whether a media type is allowed: exact entries
// ("image/png") and wildcards ("image/*", "*/*").
type typeMatcher struct {
	exact    map[string]bool
	prefixes []string
	any      bool
}

func newTypeMatcher(types []string) typeMatcher {
	m := typeMatcher{exact: make(map[string]bool)}
	if len(types) == 0 {
		m.any = true
	}
	for _, t := range types {
		t = strings.ToLower(strings.TrimSpace(t))
		switch {
		case t == "*/*" || t == "*":
			m.any = true
		case strings.HasSuffix(t, "/*"):
			m.prefixes = append(m.prefixes, strings.TrimSuffix(t, "*"))
		default:
			m.exact[t] = true
		}
	}
	return m
}

func (m typeMatcher) allows(mediaType string) bool {
	if m.any || m.exact[mediaType] {
		return true
	}
	for _, p := range m.prefixes {
		if strings.HasPrefix(mediaType, p) {
			return true
		}
	}
	return false
}

// validType checks the syntax of a configured type entry.
func validTypePattern(t string) bool {
	t = strings.ToLower(strings.TrimSpace(t))
	if t == "*/*" || t == "*" {
		return true
	}
	if strings.HasSuffix(t, "/*") {
		_, ok := parseMediaType(strings.TrimSuffix(t, "*") + "x")
		return ok
	}
	mt, ok := parseMediaType(t)
	return ok && mt == t
}
