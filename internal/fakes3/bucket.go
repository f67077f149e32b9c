package fakes3

import (
	"encoding/base64"
	"encoding/xml"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

type owner struct {
	ID          string `xml:"ID"`
	DisplayName string `xml:"DisplayName"`
}

func (s *Server) owner() owner { return owner{ID: s.AccessKey, DisplayName: "fakes3"} }

type listBucketsResult struct {
	XMLName xml.Name `xml:"ListAllMyBucketsResult"`
	NS      string   `xml:"xmlns,attr"`
	Owner   owner    `xml:"Owner"`
	Buckets []struct {
		Name         string `xml:"Name"`
		CreationDate string `xml:"CreationDate"`
	} `xml:"Buckets>Bucket"`
}

func (c *call) listBuckets() *apiError {
	res := listBucketsResult{NS: s3NS, Owner: c.s.owner()}
	c.s.mu.Lock()
	names := make([]string, 0, len(c.s.buckets))
	for n := range c.s.buckets {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		res.Buckets = append(res.Buckets, struct {
			Name         string `xml:"Name"`
			CreationDate string `xml:"CreationDate"`
		}{n, isoTime(c.s.buckets[n].created)})
	}
	c.s.mu.Unlock()
	writeXML(c.w, c.r, http.StatusOK, res)
	return nil
}

// validBucketName applies S3's naming rules for new buckets.
func validBucketName(b string) bool {
	if len(b) < 3 || len(b) > 63 {
		return false
	}
	for i := 0; i < len(b); i++ {
		ch := b[i]
		if !(ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9' || ch == '.' || ch == '-') {
			return false
		}
	}
	first, last := b[0], b[len(b)-1]
	return first != '.' && first != '-' && last != '.' && last != '-' && !strings.Contains(b, "..")
}

type createBucketConfig struct {
	LocationConstraint string `xml:"LocationConstraint"`
}

func (c *call) createBucket() *apiError {
	if !validBucketName(c.bucket) {
		return errorf(http.StatusBadRequest, "InvalidBucketName", "The specified bucket is not valid.")
	}
	body, e := readBody(c.r, c.payload, maxXMLBody)
	if e != nil {
		return e
	}
	if len(body) > 0 {
		var cfg createBucketConfig
		if err := xml.Unmarshal(body, &cfg); err != nil {
			return errMalformedXML
		}
		if cfg.LocationConstraint != "" && cfg.LocationConstraint != c.s.Region {
			return errorf(http.StatusBadRequest, "IllegalLocationConstraintException",
				"The %s location constraint is incompatible for the region specific endpoint this request was sent to.", cfg.LocationConstraint)
		}
	}
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	if c.s.buckets[c.bucket] != nil {
		return errorf(http.StatusConflict, "BucketAlreadyOwnedByYou", "Your previous request to create the named bucket succeeded and you already own it.")
	}
	c.s.buckets[c.bucket] = &bucket{created: c.now(), objects: map[string]*object{}, uploads: map[string]*upload{}}
	c.w.Header().Set("Location", "/"+c.bucket)
	c.w.WriteHeader(http.StatusOK)
	return nil
}

func (c *call) headBucket() *apiError {
	if e := c.bucketExists(); e != nil {
		return e
	}
	c.w.Header().Set("X-Amz-Bucket-Region", c.s.Region)
	c.w.WriteHeader(http.StatusOK)
	return nil
}

func (c *call) deleteBucket() *apiError {
	b, e := c.lockBucket()
	if e != nil {
		return e
	}
	defer c.s.mu.Unlock()
	if len(b.objects) > 0 || len(b.uploads) > 0 {
		return errorf(http.StatusConflict, "BucketNotEmpty", "The bucket you tried to delete is not empty")
	}
	delete(c.s.buckets, c.bucket)
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

func (c *call) location() *apiError {
	if e := c.bucketExists(); e != nil {
		return e
	}
	region := c.s.Region
	if region == "us-east-1" {
		region = "" // S3 names the default region by omission
	}
	writeXML(c.w, c.r, http.StatusOK, struct {
		XMLName xml.Name `xml:"LocationConstraint"`
		NS      string   `xml:"xmlns,attr"`
		Region  string   `xml:",chardata"`
	}{NS: s3NS, Region: region})
	return nil
}

type listEntry struct {
	Key          string `xml:"Key"`
	LastModified string `xml:"LastModified"`
	ETag         string `xml:"ETag"`
	Size         int64  `xml:"Size"`
	StorageClass string `xml:"StorageClass"`
}

type commonPrefix struct {
	Prefix string `xml:"Prefix"`
}

type listResult struct {
	XMLName               xml.Name       `xml:"ListBucketResult"`
	NS                    string         `xml:"xmlns,attr"`
	Name                  string         `xml:"Name"`
	Prefix                string         `xml:"Prefix"`
	Delimiter             string         `xml:"Delimiter,omitempty"`
	MaxKeys               int            `xml:"MaxKeys"`
	EncodingType          string         `xml:"EncodingType,omitempty"`
	IsTruncated           bool           `xml:"IsTruncated"`
	Marker                *string        `xml:"Marker"`
	NextMarker            string         `xml:"NextMarker,omitempty"`
	KeyCount              *int           `xml:"KeyCount"`
	ContinuationToken     string         `xml:"ContinuationToken,omitempty"`
	NextContinuationToken string         `xml:"NextContinuationToken,omitempty"`
	StartAfter            string         `xml:"StartAfter,omitempty"`
	Contents              []listEntry    `xml:"Contents"`
	CommonPrefixes        []commonPrefix `xml:"CommonPrefixes"`
}

// listObjects is ListObjects (v1) or ListObjectsV2, with prefix, delimiter
// and paging. A V2 continuation token names the last key or common prefix
// returned.
func (c *call) listObjects(v2 bool) *apiError {
	q := c.q
	prefix, delim := q.Get("prefix"), q.Get("delimiter")
	maxKeys := 1000
	if v := q.Get("max-keys"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return errorf(http.StatusBadRequest, "InvalidArgument", "max-keys must be a non-negative integer")
		}
		maxKeys = min(n, 1000)
	}
	encURL := q.Get("encoding-type") == "url"
	if et := q.Get("encoding-type"); et != "" && et != "url" {
		return errorf(http.StatusBadRequest, "InvalidArgument", "Invalid Encoding Method specified in Request")
	}
	after, skipPrefix := "", ""
	res := listResult{NS: s3NS, Name: c.bucket, Prefix: prefix, Delimiter: delim, MaxKeys: maxKeys}
	if v2 {
		res.StartAfter = q.Get("start-after")
		after = res.StartAfter
		if tok := q.Get("continuation-token"); tok != "" {
			raw, err := base64.RawURLEncoding.DecodeString(tok)
			if err != nil || len(raw) == 0 {
				return errorf(http.StatusBadRequest, "InvalidArgument", "The continuation token provided is incorrect")
			}
			res.ContinuationToken = tok
			kind, name := raw[0], string(raw[1:])
			after = name
			if kind == 'p' {
				skipPrefix = name
			}
		}
	} else {
		m := q.Get("marker")
		res.Marker = &m
		after = m
		if delim != "" && strings.HasSuffix(m, delim) {
			skipPrefix = m // a NextMarker that was a common prefix
		}
	}
	if encURL {
		res.EncodingType = "url"
	}

	b, e := c.lockBucket()
	if e != nil {
		return e
	}
	keys := make([]string, 0, len(b.objects))
	for k := range b.objects {
		if strings.HasPrefix(k, prefix) && k > after && (skipPrefix == "" || !strings.HasPrefix(k, skipPrefix)) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var last string
	var lastKind byte
	seen := map[string]bool{}
	for _, k := range keys {
		if delim != "" {
			if i := strings.Index(k[len(prefix):], delim); i >= 0 {
				cp := k[:len(prefix)+i+len(delim)]
				if seen[cp] {
					continue
				}
				if len(res.Contents)+len(res.CommonPrefixes) >= maxKeys {
					res.IsTruncated = true
					break
				}
				seen[cp] = true
				res.CommonPrefixes = append(res.CommonPrefixes, commonPrefix{Prefix: encodeKey(cp, encURL)})
				last, lastKind = cp, 'p'
				continue
			}
		}
		if len(res.Contents)+len(res.CommonPrefixes) >= maxKeys {
			res.IsTruncated = true
			break
		}
		o := b.objects[k]
		res.Contents = append(res.Contents, listEntry{
			Key: encodeKey(k, encURL), LastModified: isoTime(o.modified), ETag: o.etag,
			Size: int64(len(o.data)), StorageClass: "STANDARD",
		})
		last, lastKind = k, 'k'
	}
	c.s.mu.Unlock()
	if v2 {
		n := len(res.Contents) + len(res.CommonPrefixes)
		res.KeyCount = &n
		if res.IsTruncated {
			res.NextContinuationToken = base64.RawURLEncoding.EncodeToString(append([]byte{lastKind}, last...))
		}
	} else if res.IsTruncated && delim != "" {
		res.NextMarker = encodeKey(last, encURL)
	}
	writeXML(c.w, c.r, http.StatusOK, res)
	return nil
}

// encodeKey URL-encodes a key in a listing when the client asked for it
// (keys may hold characters XML 1.0 cannot carry).
func encodeKey(k string, enc bool) string {
	if !enc {
		return k
	}
	return strings.ReplaceAll(url.QueryEscape(k), "%2F", "/")
}
