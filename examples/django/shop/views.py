"""POST /orders/ saves an order and queues its shipment in one transaction; GET shows its status."""

from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from .models import Order
from .tasks import ship_order


class OutOfStock(Exception):
    pass


@csrf_exempt
@require_POST
def create_order(request: HttpRequest) -> JsonResponse:
    reference = request.POST.get("reference", "")
    try:
        with transaction.atomic():
            order = Order.objects.create(reference=reference, item=request.POST.get("item", "book"))
            # Sent only when the transaction commits: the worker never looks for an order that
            # is not there yet, and a rolled-back order is never shipped.
            ship_order.delay_on_commit(order.pk, reference)
            if request.POST.get("item") == "unicorn":
                raise OutOfStock("no unicorns left")  # rolls back the order, and the task with it
    except OutOfStock as exc:
        return JsonResponse({"error": str(exc)}, status=409)
    return JsonResponse({"id": order.pk, "reference": reference}, status=201)


@require_GET
def order_status(request: HttpRequest, order_id: int) -> JsonResponse:
    order = get_object_or_404(Order, pk=order_id)
    return JsonResponse({"id": order.pk, "reference": order.reference, "status": order.status})
