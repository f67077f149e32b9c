package fakes3

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
)

// minPartSize is the smallest part S3 accepts before the last one.
const minPartSize = 5 << 20

// uploadSeq orders upload ids by creation, so that listings page stably.
var uploadSeq atomic.Uint64

type initiateResult struct {
	XMLName  xml.Name `xml:"InitiateMultipartUploadResult"`
	NS       string   `xml:"xmlns,attr"`
	Bucket   string   `xml:"Bucket"`
	Key      string   `xml:"Key"`
	UploadID string   `xml:"UploadId"`
}

func (c *call) createUpload() *apiError {
	if _, e := readBody(c.r, c.payload, maxXMLBody); e != nil {
		return e
	}
	id := fmt.Sprintf("%016x", uploadSeq.Add(1)) + randomHex(16)
	b, e := c.lockBucket()
	if e != nil {
		return e
	}
	b.uploads[id] = &upload{key: c.key, initiated: c.now(), header: objectHeader(c.r.Header), parts: map[int32]*part{}}
	c.s.mu.Unlock()
	writeXML(c.w, c.r, http.StatusOK, initiateResult{NS: s3NS, Bucket: c.bucket, Key: c.key, UploadID: id})
	return nil
}

// findUpload returns the upload the query names for the call's key; the
// caller holds s.mu.
func (c *call) findUpload(b *bucket) (*upload, string, *apiError) {
	id := c.q.Get("uploadId")
	up := b.uploads[id]
	if up == nil || up.key != c.key {
		return nil, id, errNoSuchUpload
	}
	return up, id, nil
}

func (c *call) uploadPart() *apiError {
	n, err := strconv.Atoi(c.q.Get("partNumber"))
	if err != nil || n < 1 || n > 10000 {
		return errorf(http.StatusBadRequest, "InvalidArgument", "Part number must be an integer between 1 and 10000, inclusive")
	}
	b, e := c.lockBucket()
	if e != nil {
		return e
	}
	_, _, e = c.findUpload(b)
	c.s.mu.Unlock()
	if e != nil {
		return e
	}
	data, e := readBody(c.r, c.payload, maxObjectSize)
	if e != nil {
		return e
	}
	if _, e := checkDigests(c.r.Header, data); e != nil {
		return e
	}
	p := &part{data: data, etag: etagOf(data), modified: c.now()}
	b, e = c.lockBucket()
	if e != nil {
		return e
	}
	defer c.s.mu.Unlock()
	up, _, e := c.findUpload(b) // it may have been aborted meanwhile
	if e != nil {
		return e
	}
	up.parts[int32(n)] = p
	c.w.Header().Set("ETag", p.etag)
	c.w.WriteHeader(http.StatusOK)
	return nil
}

type listPartsResult struct {
	XMLName              xml.Name     `xml:"ListPartsResult"`
	NS                   string       `xml:"xmlns,attr"`
	Bucket               string       `xml:"Bucket"`
	Key                  string       `xml:"Key"`
	UploadID             string       `xml:"UploadId"`
	Initiator            owner        `xml:"Initiator"`
	Owner                owner        `xml:"Owner"`
	StorageClass         string       `xml:"StorageClass"`
	PartNumberMarker     int          `xml:"PartNumberMarker"`
	NextPartNumberMarker int          `xml:"NextPartNumberMarker"`
	MaxParts             int          `xml:"MaxParts"`
	IsTruncated          bool         `xml:"IsTruncated"`
	Parts                []partResult `xml:"Part"`
}

type partResult struct {
	PartNumber   int32  `xml:"PartNumber"`
	LastModified string `xml:"LastModified"`
	ETag         string `xml:"ETag"`
	Size         int64  `xml:"Size"`
}

func (c *call) listParts() *apiError {
	maxParts, marker := 1000, 0
	if v := c.q.Get("max-parts"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return errorf(http.StatusBadRequest, "InvalidArgument", "max-parts must be a non-negative integer")
		}
		maxParts = min(n, 1000)
	}
	if v := c.q.Get("part-number-marker"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return errorf(http.StatusBadRequest, "InvalidArgument", "part-number-marker must be a non-negative integer")
		}
		marker = n
	}
	b, e := c.lockBucket()
	if e != nil {
		return e
	}
	up, id, e := c.findUpload(b)
	if e != nil {
		c.s.mu.Unlock()
		return e
	}
	res := listPartsResult{NS: s3NS, Bucket: c.bucket, Key: c.key, UploadID: id, Initiator: c.s.owner(), Owner: c.s.owner(),
		StorageClass: "STANDARD", PartNumberMarker: marker, MaxParts: maxParts}
	nums := make([]int32, 0, len(up.parts))
	for n := range up.parts {
		if int(n) > marker {
			nums = append(nums, n)
		}
	}
	slices.Sort(nums)
	for _, n := range nums {
		if len(res.Parts) >= maxParts {
			res.IsTruncated = true
			break
		}
		p := up.parts[n]
		res.Parts = append(res.Parts, partResult{PartNumber: n, LastModified: isoTime(p.modified), ETag: p.etag, Size: int64(len(p.data))})
		res.NextPartNumberMarker = int(n)
	}
	c.s.mu.Unlock()
	writeXML(c.w, c.r, http.StatusOK, res)
	return nil
}

type completeRequest struct {
	Parts []struct {
		PartNumber int32  `xml:"PartNumber"`
		ETag       string `xml:"ETag"`
	} `xml:"Part"`
}

type completeResult struct {
	XMLName  xml.Name `xml:"CompleteMultipartUploadResult"`
	NS       string   `xml:"xmlns,attr"`
	Location string   `xml:"Location"`
	Bucket   string   `xml:"Bucket"`
	Key      string   `xml:"Key"`
	ETag     string   `xml:"ETag"`
}

// completeUpload assembles the named parts as S3 does: ascending part
// numbers, every part stored with the ETag given, every part but the last
// at least 5 MiB; the ETag is the MD5 of the parts' MD5s, "-N".
func (c *call) completeUpload() *apiError {
	if inm := c.r.Header.Get("If-None-Match"); inm != "" && inm != "*" {
		return errorf(http.StatusNotImplemented, "NotImplemented", "If-None-Match only supports '*'")
	}
	body, e := readBody(c.r, c.payload, maxXMLBody)
	if e != nil {
		return e
	}
	var req completeRequest
	if err := xml.Unmarshal(body, &req); err != nil || len(req.Parts) == 0 {
		return errMalformedXML
	}
	b, e := c.lockBucket()
	if e != nil {
		return e
	}
	defer c.s.mu.Unlock()
	up, id, e := c.findUpload(b)
	if e != nil {
		return e
	}
	for i, p := range req.Parts {
		if i > 0 && p.PartNumber <= req.Parts[i-1].PartNumber {
			return errPartOrder
		}
	}
	parts := make([]*part, len(req.Parts))
	for i, p := range req.Parts {
		got := up.parts[p.PartNumber]
		if got == nil || strings.Trim(p.ETag, `"`) != strings.Trim(got.etag, `"`) {
			return errInvalidPart
		}
		parts[i] = got
	}
	size := 0
	for i, p := range parts {
		if i < len(parts)-1 && len(p.data) < minPartSize {
			return errTooSmall
		}
		size += len(p.data)
	}
	if e := writeCondition(c.r.Header, b.objects[c.key]); e != nil {
		return e
	}
	data := make([]byte, 0, size)
	sums := make([]byte, 0, md5.Size*len(parts))
	for _, p := range parts {
		data = append(data, p.data...)
		raw, _ := hex.DecodeString(strings.Trim(p.etag, `"`))
		sums = append(sums, raw...)
	}
	sum := md5.Sum(sums)
	etag := fmt.Sprintf(`"%s-%d"`, hex.EncodeToString(sum[:]), len(parts))
	b.objects[c.key] = &object{data: data, etag: etag, modified: c.now(), header: up.header, parts: len(parts)}
	delete(b.uploads, id)
	writeXML(c.w, c.r, http.StatusOK, completeResult{NS: s3NS, Location: "/" + c.bucket + "/" + c.key, Bucket: c.bucket, Key: c.key, ETag: etag})
	return nil
}

func (c *call) abortUpload() *apiError {
	b, e := c.lockBucket()
	if e != nil {
		return e
	}
	defer c.s.mu.Unlock()
	_, id, e := c.findUpload(b)
	if e != nil {
		return e
	}
	delete(b.uploads, id)
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

type listUploadsResult struct {
	XMLName            xml.Name       `xml:"ListMultipartUploadsResult"`
	NS                 string         `xml:"xmlns,attr"`
	Bucket             string         `xml:"Bucket"`
	KeyMarker          string         `xml:"KeyMarker"`
	UploadIDMarker     string         `xml:"UploadIdMarker"`
	NextKeyMarker      string         `xml:"NextKeyMarker"`
	NextUploadIDMarker string         `xml:"NextUploadIdMarker"`
	Prefix             string         `xml:"Prefix"`
	Delimiter          string         `xml:"Delimiter,omitempty"`
	MaxUploads         int            `xml:"MaxUploads"`
	IsTruncated        bool           `xml:"IsTruncated"`
	Uploads            []uploadResult `xml:"Upload"`
	CommonPrefixes     []commonPrefix `xml:"CommonPrefixes"`
}

type uploadResult struct {
	Key          string `xml:"Key"`
	UploadID     string `xml:"UploadId"`
	Initiator    owner  `xml:"Initiator"`
	Owner        owner  `xml:"Owner"`
	StorageClass string `xml:"StorageClass"`
	Initiated    string `xml:"Initiated"`
}

// listUploads lists incomplete uploads by key, then by creation, from the
// markers on.
func (c *call) listUploads() *apiError {
	prefix, delim := c.q.Get("prefix"), c.q.Get("delimiter")
	keyMarker, idMarker := c.q.Get("key-marker"), c.q.Get("upload-id-marker")
	maxUploads := 1000
	if v := c.q.Get("max-uploads"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return errorf(http.StatusBadRequest, "InvalidArgument", "max-uploads must be a non-negative integer")
		}
		maxUploads = min(n, 1000)
	}
	res := listUploadsResult{NS: s3NS, Bucket: c.bucket, KeyMarker: keyMarker, UploadIDMarker: idMarker,
		Prefix: prefix, Delimiter: delim, MaxUploads: maxUploads}
	b, e := c.lockBucket()
	if e != nil {
		return e
	}
	defer c.s.mu.Unlock()
	type entry struct {
		id string
		up *upload
	}
	var all []entry
	for id, up := range b.uploads {
		if !strings.HasPrefix(up.key, prefix) {
			continue
		}
		if keyMarker != "" && (up.key < keyMarker || up.key == keyMarker && (idMarker == "" || id <= idMarker)) {
			continue
		}
		all = append(all, entry{id, up})
	}
	slices.SortFunc(all, func(a, b entry) int {
		if c := strings.Compare(a.up.key, b.up.key); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
	seen := map[string]bool{}
	for _, u := range all {
		if delim != "" {
			if i := strings.Index(u.up.key[len(prefix):], delim); i >= 0 {
				cp := u.up.key[:len(prefix)+i+len(delim)]
				if !seen[cp] {
					seen[cp] = true
					res.CommonPrefixes = append(res.CommonPrefixes, commonPrefix{Prefix: cp})
				}
				continue
			}
		}
		if len(res.Uploads) >= maxUploads {
			res.IsTruncated = true
			break
		}
		res.Uploads = append(res.Uploads, uploadResult{Key: u.up.key, UploadID: u.id, Initiator: c.s.owner(), Owner: c.s.owner(),
			StorageClass: "STANDARD", Initiated: isoTime(u.up.initiated)})
		res.NextKeyMarker, res.NextUploadIDMarker = u.up.key, u.id
	}
	writeXML(c.w, c.r, http.StatusOK, res)
	return nil
}
