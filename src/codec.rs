//! The gRPC codec of our services: prost's, except that a request body that
//! is not the method's protobuf message is the caller's error
//! (`INVALID_ARGUMENT`), where prost's codec answers `INTERNAL`.

use std::marker::PhantomData;

use prost::bytes::Buf;
use tonic::{
    Status,
    codec::{BufferSettings, Codec, DecodeBuf, Decoder},
};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// The codec the generated services and clients use (`build.rs`).
#[derive(Debug, Clone)]
pub(crate) struct ProtoCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for ProtoCodec<T, U> {
    fn default() -> Self {
        ProtoCodec(PhantomData)
    }
}

impl<T, U> Codec for ProtoCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProtoDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProtoDecoder(ProstDecoder::default())
    }
}

/// Prost's decoder, with its decode errors answered as `INVALID_ARGUMENT`.
pub(crate) struct ProtoDecoder<U>(ProstDecoder<U>);

impl<U: prost::Message + Default> Decoder for ProtoDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        let refused = |why: &str| {
            crate::service::refusal(
                crate::error::Reason::InvalidBody,
                format!("the request body is not this method's protobuf message: {why}"),
            )
        };
        // The message is one contiguous chunk (tonic buffers the whole
        // frame): decoding from a plain slice spares every varint and field
        // the buffer wrapper's bounds checks and bookkeeping (measured: about
        // 10,000 instructions of SelectOffer's 120,000, BENCHMARKS.md).
        let len = buf.remaining();
        let chunk = buf.chunk();
        if chunk.len() == len {
            let decoded = U::decode(chunk).map_err(|e| refused(&e.to_string()))?;
            buf.advance(len);
            return Ok(Some(decoded));
        }
        self.0.decode(buf).map_err(|s| refused(s.message()))
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}
