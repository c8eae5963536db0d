//! The codec of every authzd service: prost, with each request checked by
//! `input::check_request` before it is decoded, and a body that does not
//! decode answered `INVALID_ARGUMENT` (tonic's default is `INTERNAL`, which
//! must mean a bug of ours).

use std::marker::PhantomData;

use prost::bytes::Buf;
use prost::{Message, Name};
use tonic::Status;
use tonic::codec::{BufferSettings, DecodeBuf, Decoder};
use tonic_prost::ProstEncoder;

use super::input;

#[derive(Debug, Clone)]
pub struct Codec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for Codec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> tonic::codec::Codec for Codec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Name + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = CheckedDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        CheckedDecoder(PhantomData)
    }
}

#[derive(Debug)]
pub struct CheckedDecoder<U>(PhantomData<U>);

impl<U: Message + Name + Default> Decoder for CheckedDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        let bytes = buf.copy_to_bytes(buf.remaining());
        input::check_request(U::PACKAGE, U::NAME, &bytes)?;
        U::decode(bytes).map(Some).map_err(|_| {
            Status::invalid_argument(format!("request: not a valid {} message", U::full_name()))
        })
    }
}

/// The codec of the standard services authzd serves (Envoy's Check, gRPC
/// health): their types come from other crates and have no rules of ours
/// to check, but a body that does not decode is still the caller's
/// mistake, answered `INVALID_ARGUMENT` rather than tonic's `INTERNAL`.
#[derive(Debug, Clone)]
pub struct Lenient<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for Lenient<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> tonic::codec::Codec for Lenient<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = LenientDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        LenientDecoder(PhantomData)
    }
}

#[derive(Debug)]
pub struct LenientDecoder<U>(PhantomData<U>);

impl<U: Message + Default> Decoder for LenientDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf)
            .map(Some)
            .map_err(|_| Status::invalid_argument("request: not a valid message of this method"))
    }
}
