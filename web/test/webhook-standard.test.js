// Webhook deliveries verify with the Standard Webhooks npm package. The
// deliveries are the fixture testdata/webhook-standard.json, which the Go
// test TestStandardFixture (internal/webhook) checks against what the
// signer produces; this test computes nothing itself.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { Webhook } from 'standardwebhooks'

const fixture = JSON.parse(readFileSync(new URL('../../testdata/webhook-standard.json', import.meta.url), 'utf8'))

// webhook is the library's verifier for a delivery's secret, taken the way
// the README tells applications to: a whsec_ secret as it is, any other
// secret as its UTF-8 bytes.
function webhook (d) {
  return d.secret_format === 'raw'
    ? new Webhook(Buffer.from(d.secret, 'utf8'), { format: 'raw' })
    : new Webhook(d.secret)
}

test('the fixture holds deliveries with both forms of secret', () => {
  assert.deepEqual(fixture.deliveries.map(d => d.secret_format).sort(), ['raw', 'whsec'])
})

for (const d of fixture.deliveries) {
  test(`a delivery verifies with standardwebhooks: ${d.name}`, (t) => {
    const signedAt = Number(d.headers['webhook-timestamp'])
    assert.ok(signedAt > 0, 'webhook-timestamp is unix seconds')
    // The library checks the timestamp against its clock: a minute later.
    t.mock.method(Date, 'now', () => (signedAt + 60) * 1000)

    const payload = webhook(d).verify(d.body, d.headers)
    assert.equal(payload.id, d.headers['webhook-id'])
    assert.equal(payload.type, 'upload.confirmed')
    assert.equal(payload.data.metadata.team, 'Zürich')
    // As a Buffer of the raw bytes, the way a server reads a body.
    webhook(d).verify(Buffer.from(d.body, 'utf8'), d.headers)

    // Negative controls: the same delivery with one thing changed.
    const tampered = d.body.replace('"confirmed"', '"rejected"')
    assert.notEqual(tampered, d.body)
    assert.throws(() => webhook(d).verify(tampered, d.headers), /signature/i)
    assert.throws(() => new Webhook(Buffer.from('another-secret-0123456789'), { format: 'raw' }).verify(d.body, d.headers), /signature/i)
    assert.throws(() => webhook(d).verify(d.body, { ...d.headers, 'webhook-id': 'other:upload.confirmed' }), /signature/i)
    t.mock.method(Date, 'now', () => (signedAt + 3600) * 1000)
    assert.throws(() => webhook(d).verify(d.body, d.headers), /too old/i)
  })
}
