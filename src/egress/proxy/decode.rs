//! Decoding answers that came compressed although the proxy removed `Accept-Encoding`:
//! reflection can only scan plain bytes. gzip, deflate, br and zstd are decoded as they stream;
//! anything else (including stacked encodings) is refused, and the caller answers 502.

use async_compression::tokio::bufread::{BrotliDecoder, GzipDecoder, ZlibDecoder, ZstdDecoder};
use http::HeaderMap;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH};
use tokio_util::io::StreamReader;

use super::body::{DataStream, ProxyBody, ReaderBody, boxed};

/// The answer's content coding could not be undone.
#[derive(Debug, thiserror::Error)]
#[error("upstream answered with content encoding {0:?}, which the proxy cannot decode")]
pub(crate) struct UnsupportedEncoding(pub(crate) String);

/// Decodes `body` per `headers`' `Content-Encoding`, removing that header (and the length,
/// which no longer holds). Without an encoding (or `identity`) the body is returned as it is.
pub(crate) fn decode(headers: &mut HeaderMap, body: ProxyBody) -> Result<ProxyBody, UnsupportedEncoding> {
    let mut codings = Vec::new();
    for value in headers.get_all(CONTENT_ENCODING) {
        let text = value.to_str().map_err(|_| UnsupportedEncoding("<not text>".into()))?;
        for coding in text.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            if !coding.eq_ignore_ascii_case("identity") {
                codings.push(coding.to_ascii_lowercase());
            }
        }
    }
    let coding = match codings.as_slice() {
        [] => {
            headers.remove(CONTENT_ENCODING);
            return Ok(body);
        }
        [one] => one.clone(),
        _ => return Err(UnsupportedEncoding(codings.join(", "))),
    };
    let reader = StreamReader::new(DataStream(body));
    let decoded = match coding.as_str() {
        "gzip" | "x-gzip" => boxed(ReaderBody::new(GzipDecoder::new(reader))),
        "deflate" => boxed(ReaderBody::new(ZlibDecoder::new(reader))),
        "br" => boxed(ReaderBody::new(BrotliDecoder::new(reader))),
        "zstd" => boxed(ReaderBody::new(ZstdDecoder::new(reader))),
        _ => return Err(UnsupportedEncoding(coding)),
    };
    headers.remove(CONTENT_ENCODING);
    headers.remove(CONTENT_LENGTH);
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    use async_compression::tokio::bufread::{BrotliEncoder, GzipEncoder, ZstdEncoder};
    use http_body_util::BodyExt;
    use tokio::io::AsyncReadExt;

    use super::*;
    use crate::egress::proxy::body::full;

    async fn roundtrip(coding: &str, compressed: Vec<u8>) -> Vec<u8> {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_ENCODING, coding.parse().unwrap());
        headers.insert(CONTENT_LENGTH, compressed.len().into());
        let body = decode(&mut headers, full(compressed)).unwrap();
        assert!(headers.is_empty());
        body.collect().await.unwrap().to_bytes().to_vec()
    }

    #[tokio::test]
    async fn gzip_br_zstd() {
        let plain = b"hello, compressed world ".repeat(100);
        let mut gz = Vec::new();
        GzipEncoder::new(&plain[..]).read_to_end(&mut gz).await.unwrap();
        assert_eq!(roundtrip("gzip", gz).await, plain);
        let mut br = Vec::new();
        BrotliEncoder::new(&plain[..]).read_to_end(&mut br).await.unwrap();
        assert_eq!(roundtrip("br", br).await, plain);
        let mut zst = Vec::new();
        ZstdEncoder::new(&plain[..]).read_to_end(&mut zst).await.unwrap();
        assert_eq!(roundtrip("zstd", zst).await, plain);
    }

    #[test]
    fn unknown_or_stacked_is_refused() {
        for coding in ["compress", "gzip, br"] {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_ENCODING, coding.parse().unwrap());
            assert!(decode(&mut headers, full("x")).is_err(), "{coding}");
        }
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_ENCODING, "identity".parse().unwrap());
        assert!(decode(&mut headers, full("x")).is_ok());
    }
}
