"""Uploads API: presigned upload tickets and upload status."""

from fastapi import APIRouter, Depends, Response

from memlayer.auth import Principal
from memlayer.services import uploads
from memlayer.web import create_app, current_user, lambda_handler, writer

router = APIRouter(tags=["uploads"])


@router.post(
    "/v1/uploads",
    status_code=201,
    response_model=uploads.UploadTicket,
    responses={413: {"description": "The declared file is larger than the upload limit"}},
)
async def create_upload(
    body: uploads.UploadCreate, response: Response, principal: Principal = Depends(writer)
) -> uploads.UploadTicket:
    ticket = await uploads.create_upload(principal.user_id, body)
    response.headers["Location"] = ticket.status_url
    return ticket


@router.get("/v1/uploads/{upload_id}", response_model=uploads.Upload)
async def get_upload(
    upload_id: str, principal: Principal = Depends(current_user)
) -> uploads.Upload:
    return await uploads.get_upload(principal.user_id, upload_id)


app = create_app(router, title="memlayer uploads")
handler = lambda_handler(app)
