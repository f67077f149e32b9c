// Shared by the Uppy test pages: confirms what Uppy uploaded and lists the
// records, in the page and in window.results for the tests.

/**
 * Handles Uppy's upload-success for a caddyupload route: single files went
 * as a POST policy form, for which Uppy calls no complete, so the page
 * confirms them with POST {base}/complete {"key"}. Multipart uploads were
 * confirmed by Uppy's own call to /s3/multipart/{id}/complete; the same
 * call by key is then idempotent and answers the confirmed record.
 */
export async function confirmed (base, headers, response, multipart) {
  const res = await fetch(`${base}/complete`, {
    method: 'POST',
    headers: { ...headers, 'Content-Type': 'application/json' },
    body: JSON.stringify({ key: response.body.key })
  })
  const body = await res.json()
  if (!res.ok) throw new Error(body.error?.message || `status ${res.status}`)
  return { ...body, multipart }
}

window.results = {}

export function show (name, result) {
  window.results[name] = result
  let li = [...document.querySelectorAll('#results li')].find(el => el.dataset.name === name)
  if (!li) {
    li = document.createElement('li')
    li.dataset.name = name
    document.getElementById('results').append(li)
  }
  li.dataset.state = result.error ? 'error' : result.status
  li.textContent = result.error
    ? `${name}: ${result.error}`
    : `${name}: ${result.status}, ${result.size} bytes${result.multipart ? ' (multipart)' : ' (POST form)'}`
}
