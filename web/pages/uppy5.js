// Stock Uppy 5: @uppy/aws-s3 5.x with `endpoint` (the route) and the token
// in the Authorization header it sends on every call to the route.
import Uppy from 'uppy5-core'
import AwsS3 from 'uppy5-aws-s3'
import { confirmed, show } from './results.js'

const base = '/uploads'
const MiB = 1024 * 1024
const isMultipart = file => file.size > 6 * MiB
const input = document.getElementById('files')

/** Sets up Uppy with the bearer token and enables the file input. */
window.start = token => {
  const headers = { authorization: `Bearer ${token}` }
  const uppy = new Uppy()
    .use(AwsS3, { endpoint: base, headers, shouldUseMultipart: isMultipart })
  uppy.on('upload-success', async (file, response) => {
    try {
      show(file.name, await confirmed(base, headers, response, isMultipart(file)))
    } catch (err) {
      show(file.name, { error: err.message })
    }
  })
  uppy.on('upload-error', (file, err) => show(file.name, { error: err.message }))
  input.addEventListener('change', () => {
    for (const file of input.files) uppy.addFile({ name: file.name, type: file.type, data: file, source: 'input' })
    uppy.upload()
  })
  input.disabled = false
}
